"""``ncbench data check``: a dataset folder against its card."""

from __future__ import annotations

from pathlib import Path

NAMES = ("data",)


def add_parser(sub) -> None:
    da = sub.add_parser("data", help="check a dataset folder against its card")
    dsub = da.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    dc = dsub.add_parser(
        "check", help="validate a folder against a dataset card (files, shapes, row and caption counts)",
        description="Check that DIR holds the dataset as its card in datasets/ describes it: the vocabulary, and "
                    "for every split the image features (memory-mapped: only the header is read, so shapes of "
                    "multi-GB files are checked at once; truncated files are found) and the number of captions. "
                    "Prints one line per file; exit code 1 when anything is missing or misshapen.")
    dc.add_argument("--dataset", required=True, help="a dataset with a file layout: f30k, coco, cc152k, now (or now-bpe, now-jieba)")
    dc.add_argument("--root", "--data-root", dest="root", required=True, metavar="DIR",
                    help="the folder given to `ncbench run --data-root`")


def command(args) -> int:
    from ..data.check import check_dataset
    from ..registry import DATASETS

    findings = check_dataset(DATASETS.get(args.dataset), Path(args.root))
    for f in findings:
        print(f"{'ok  ' if f.ok else 'FAIL'}  {f.path}: {f.message}")
    bad = [f for f in findings if not f.ok]
    print(f"\n{args.dataset}: " + (f"{len(bad)} problem(s) in {len(findings)} file(s)" if bad
                                   else f"all {len(findings)} file(s) as the card describes"))
    return 1 if bad else 0
