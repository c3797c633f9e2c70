"""``ncbench evaluate``: score the authors' released checkpoints on a dataset's test split with
ncbench's own evaluation and store the outcome as a result of kind ``checkpoint``
(``ncbench.external``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .options import check_folder_path, default_cache_dir, precision_options

NAMES = ("evaluate",)

EPILOG = """\
examples:
  ncbench evaluate f30k_best_0.2.tar --data-root NCR-data/data --claims 491.1 \\
      --source https://ncr-paper.cdn.bcebos.com/data/NCR-models/...     NCR's A/B pair, F30K test (1K)
  ncbench evaluate coco_SAF.tar coco_SGR.tar --data-root data/          CRCL/DECL/L2RM "SGRAF": SAF + SGR averaged
  ncbench evaluate model.tar --family crcl --dataset coco --noise 0.4   COCO: 5-fold 1K mean and 5K

Files are read weights-only (nothing in them runs); their layout is recognised from the keys
(ncr: model_A/model_B, as NCR, BiCro, CREAM, PC2; crcl; decl; l2rm: net) or given by --family.
The vocabulary is the dataset's ({data-root}/../vocab/{name}_precomp_vocab.json, as NCR-data.tar
lays it out). The result is <results>/.../<method>@checkpoint/<backbone>/seed-0.json: compare it
with ncbench-trained rows (`ncbench compare --methods ncr@checkpoint,ncr ...`).
"""


def add_parser(sub) -> None:
    from ..external import FAMILIES

    e = sub.add_parser(
        "evaluate", help="evaluate the authors' released checkpoints on a dataset's test split",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Load one or several released checkpoint files of the official code (weights only: a file "
                    "holding anything else is refused without running it), rebuild their networks on ncbench's "
                    "SGR/SAF/VSE-infinity from the saved options, average them as the family does (NCR's A and B; "
                    "an SAF and an SGR file) and evaluate on the dataset's test protocol (F30K 1K, COCO 5-fold 1K "
                    "and 5K, CC152K). Writes a result file of kind 'checkpoint' with per-query ranks.")
    e.add_argument("files", nargs="+", metavar="CHECKPOINT", help="checkpoint file(s) of one family")
    e.add_argument("--family", choices=sorted(FAMILIES), help="the files' layout (default: recognised from the keys)")
    e.add_argument("--dataset", help="dataset to evaluate on (default: the checkpoints' opt.data_name)")
    e.add_argument("--data-root", help="folder holding the dataset's files (e.g. NCR-data/data)")
    e.add_argument("--noise", type=float, metavar="R", help="noise ratio the networks were trained at "
                                                             "(default: opt.noise_ratio)")
    e.add_argument("--noise-type", choices=("caption", "image"),
                   help="noise type of the training (default: the family's papers': caption for ncr and crcl, "
                        "image for decl and l2rm)")
    e.add_argument("--method", help="method the row is of (default: the family's: ncr, crcl, decl, l2rm; "
                                    "e.g. bicro or cream for their NCR-layout files)")
    e.add_argument("--tag", default="checkpoint", help="tag of the row, <method>@<tag> (default: checkpoint)")
    e.add_argument("--source", metavar="URL", help="where the checkpoint was downloaded from (recorded)")
    e.add_argument("--claims", type=float, metavar="RSUM", help="the rSum the authors report (recorded with "
                                                                 "the difference evaluated - claimed)")
    e.add_argument("--results", default="results", help="results folder (default: ./results)")
    e.add_argument("--cache-dir", default=default_cache_dir(), help="cache folder (synthetic datasets)")
    e.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda if available, else cpu)")
    e.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's choice)")
    precision_options(e)
    e.add_argument("--json", action="store_true", help="print the result record as JSON")


def command(args) -> int:
    import json

    import torch

    from ..config import check_tag
    from ..external.evaluate import Request, evaluate_checkpoints, write_record

    for option, value in (("--results", args.results), ("--cache-dir", args.cache_dir)):
        check_folder_path(value, option)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    req = Request(files=[Path(f) for f in args.files], family=args.family, dataset=args.dataset,
                  data_root=Path(args.data_root) if args.data_root else None, cache_dir=Path(args.cache_dir),
                  noise_ratio=args.noise, noise_type=args.noise_type, method=args.method, tag=check_tag(args.tag),
                  source=args.source, claims=args.claims, device=device, precision=args.precision)
    record, checkpoints = evaluate_checkpoints(req)
    for c in checkpoints:
        unused = c.record()["opt_unused"]
        if unused:
            print(f"{c.path}: opt fields not used by evaluation: {', '.join(unused)}", file=sys.stderr)
    path = write_record(Path(args.results), record, lambda m: print(m, file=sys.stderr))
    if args.json:
        print(json.dumps(record, indent=1))
        return 0
    test, meta = record["test"], record["meta"]
    primary = test[test["primary"]]
    line = (f"{record['identity']['method']}@{args.tag} {record['identity']['backbone']} on {record['identity']['dataset']} "
            f"({meta['ensemble_size']} networks, {meta['family']} layout): rSum {primary['rsum']:.1f}  "
            f"i2t {primary['i2t_r1']:.1f}/{primary['i2t_r5']:.1f}/{primary['i2t_r10']:.1f}  "
            f"t2i {primary['t2i_r1']:.1f}/{primary['t2i_r5']:.1f}/{primary['t2i_r10']:.1f}")
    if test["primary"] == "fold_mean":
        line += f"  (5-fold 1K mean; 5K rSum {test['full']['rsum']:.1f})"
    print(line)
    if "claims" in meta:
        print(f"claimed rSum {meta['claims']['rsum']:.1f}: difference {meta['claims']['delta']:+.1f}")
    print(f"result: {path} (precision {meta['precision']})")
    return 0
