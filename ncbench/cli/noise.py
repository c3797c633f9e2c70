"""``ncbench noise info|make|audit``: inspect or generate noise-index files, audit noise models.

``make`` without a dataset writes the papers' shuffle for a number of captions; with ``--dataset``
it generates any noise model (``--model``, ``--noise-opt``) on that dataset's training split, as a
run would (index ``.npy`` plus, for ``partial``, its ``.texts.json``). ``info`` reads index files;
with ``--dataset`` it also gives the similarity of the swapped images beside a random shuffle's.
``audit`` scores the models' noisy pairs against human judgments (``ncbench.noise_audit``).
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import ConfigError
from .options import default_cache_dir, ints, noise_protocol

NAMES = ("noise",)

# ``noise make --captions``: at least 1 and at most 20 million, 35 times COCO's 566,435 training
# captions (the index is 8 bytes a caption, several copies of it while shuffling: ~1 GB at the cap)
MAX_CAPTIONS = 20_000_000
MODELS_HELP = ("noise model: shuffle (the papers'), neighbour (hard: one of the k most similar other images, below a "
               "similarity ceiling), partial (one content word of the caption replaced), mixed (alpha neighbour, the "
               "rest shuffled)")


def _dataset_options(p, required: bool = False) -> None:
    p.add_argument("--dataset", required=required, help="a registered dataset: generate or measure on its training split")
    p.add_argument("--data-root", help="folder holding a real dataset's files")
    p.add_argument("--cache-dir", default=default_cache_dir(), help="where generated data is kept")


def _model_options(p) -> None:
    p.add_argument("--model", dest="noise_model", metavar="MODEL", default="shuffle", help=MODELS_HELP + " (default: shuffle)")
    p.add_argument("--noise-opt", action="append", default=[], metavar="KEY=VALUE",
                   help="a parameter of the noise model, e.g. k=10, ceiling=0.85, alpha=0.5")


def add_parser(sub) -> None:
    nz = sub.add_parser("noise", help="make, inspect or audit noise (index files, noise models)")
    nsub = nz.add_subparsers(dest="noise_command", metavar="ACTION", required=True)
    ni = nsub.add_parser("info", help="layout, noise type, length, value range, sha256 and realised noise ratio of "
                                      "index files; with --dataset, the similarity of the swapped images")
    ni.add_argument("files", nargs="+")
    ni.add_argument("--captions-per-image", type=int, default=5, help="captions per image row (default: 5)")
    _dataset_options(ni)
    nm = nsub.add_parser("make", help="generate an index: the papers' shuffle for --captions, or any noise model on "
                                      "a --dataset's training split")
    nm.add_argument("--captions", type=int, help="number of training captions (F30K: 145000); not with --dataset")
    nm.add_argument("--captions-per-image", type=int, default=5)
    nm.add_argument("--ratio", type=float, required=True)
    nm.add_argument("--type", dest="noise_type", choices=("caption", "image"), default="caption",
                    help="caption-level (NCR) or image-level (DECL/RCL) noise (default: caption)")
    _model_options(nm)
    _dataset_options(nm)
    nm.add_argument("--seed", type=int, default=0)
    nm.add_argument("--out", required=True, help="output .npy (one entry per caption); partial noise also writes "
                                                 "<out stem>.texts.json")
    na = nsub.add_parser("audit", help="how each noise model's noisy training pairs look to people (Flickr8k judgments), "
                                       "beside a random shuffle; and a sweep of neighbour's k and ceiling")
    _dataset_options(na)
    na.set_defaults(dataset="flickr8k-xception")
    na.add_argument("--models", default="shuffle,neighbour,partial,mixed", help="comma-separated noise models")
    na.add_argument("--noise-opt", action="append", default=[], metavar="KEY=VALUE",
                    help="a parameter for every model that has it (e.g. k=20)")
    na.add_argument("--ratio", type=float, default=0.5, help="noise ratio (default: 0.5)")
    na.add_argument("--seeds", default="0,1,2", help="noise seeds (default: 0,1,2)")
    na.add_argument("--type", dest="noise_type", choices=("caption", "image"), default="caption")
    na.add_argument("--no-sweep", action="store_true", help="leave out the sweep of neighbour's k and ceiling")
    na.add_argument("--expert", help="expert judgment file (default: the card's)")
    na.add_argument("--crowd", help="crowd judgment file (default: the card's)")
    na.add_argument("--json", action="store_true", help="print JSON instead of tables")


def _load(args):
    """The dataset named by ``--dataset`` and the inputs a noise model sees (its training split)."""
    from ..data.noise_models import inputs_from_split
    from ..registry import DATASETS

    card = DATASETS.get(args.dataset)
    ds = card.load(Path(args.data_root) if args.data_root else None, Path(args.cache_dir))
    return card, ds, inputs_from_split(ds.train, ds.vocab, card.word_list, ds.root)


def _similarity_line(inputs, index, seed: int) -> str:
    """Mean cosine similarity of the moved pairs' true and given images (the dataset's features),
    beside the papers' shuffle at the same ratio and seed."""
    import numpy as np

    from ..data.noise import make_noise_index
    from ..data.noise_models import embed_images, swap_similarity

    emb = embed_images(inputs, "features")
    image_of_row = np.full(inputs.n_rows, -1, dtype=np.int64)
    image_of_row[inputs.image_rows] = np.arange(inputs.n_images)

    def mean_sim(t2i):
        moved = np.flatnonzero(t2i != inputs.true_rows)
        if not len(moved):
            return float("nan")
        true_img = moved // inputs.captions_per_image
        return float(swap_similarity(emb, true_img, image_of_row[t2i[moved]]).mean())

    if index.clean.all() or (index.t2i == inputs.true_rows).all():
        return "  no caption is given another image (nothing to compare with a shuffle)"
    ratio = index.realised_ratio if index.ratio == 0 else index.ratio
    shuffle = make_noise_index(inputs.true_rows, min(ratio, 0.999), seed, index.noise_type, inputs.n_rows)
    return (f"  similarity of the swapped images (cosine, the dataset's features): {mean_sim(index.t2i):.3f}; "
            f"a random shuffle's at ratio {ratio:g}: {mean_sim(shuffle.t2i):.3f}")


def command(args) -> int:
    if args.noise_command == "audit":
        return _audit(args)
    cpi = args.captions_per_image
    if cpi < 1:
        raise ConfigError(f"--captions-per-image must be ≥ 1, got {cpi}")
    if args.noise_command == "make":
        return _make(args)
    return _info(args)


def _make(args) -> int:
    import numpy as np

    from ..data.noise import generate_noise, make_noise_index, save_noise_index, texts_path
    from ..data.noise_models import texts_bytes
    from ..atomic import write_atomic

    spec = noise_protocol(args)
    if args.dataset:
        if args.captions is not None:
            raise ConfigError("--captions and --dataset exclude each other: the dataset gives the captions")
        card, ds, inputs = _load(args)
        idx = generate_noise(spec, inputs, args.ratio, args.seed)
        if idx.texts:
            write_atomic(texts_path(args.out), lambda f: f.write(texts_bytes(idx.texts)))
        save_noise_index(idx, args.out)
        print(f"{args.out}: {args.dataset} {spec.label} noise (model {spec.model} v{spec.version}"
              + (f", {', '.join(f'{k}={v}' for k, v in spec.params)}" if spec.params else "")
              + f"), ratio {args.ratio:g} -> realised {idx.realised_ratio:.5f}, sha256 {idx.sha256}")
        if idx.texts:
            print(f"  {len(idx.texts)} corrupted caption texts in {texts_path(args.out)}, sha256 {idx.texts_sha256}")
        for key, value in idx.details.items():
            print(f"  {key}: {value}")
        if not idx.texts:
            print(_similarity_line(inputs, idx, args.seed))
        return 0
    if args.captions is None:
        raise ConfigError("noise make needs --captions N (the papers' shuffle) or --dataset D (any noise model)")
    if not spec.is_papers:
        raise ConfigError(f"--model {spec.model} looks at the data (images or captions): give --dataset")
    if not 1 <= args.captions <= MAX_CAPTIONS:
        raise ConfigError(f"--captions must be between 1 and {MAX_CAPTIONS:,} (COCO has 566,435), got {args.captions}")
    true = np.arange(args.captions, dtype=np.int64) // args.captions_per_image
    idx = make_noise_index(true, args.ratio, args.seed, args.noise_type)
    save_noise_index(idx, args.out)
    print(f"{args.out}: {args.noise_type}-level, ratio {args.ratio:g} -> realised {idx.realised_ratio:.5f}, "
          f"sha256 {idx.sha256}")
    return 0


def _info(args) -> int:
    from ..data.noise import describe_index_file, load_noise_index, texts_path
    from ..data.noise_models import read_texts, texts_sha256

    loaded = _load(args) if args.dataset else None
    for f in args.files:
        d = describe_index_file(f, args.captions_per_image)
        print(f"{f}: {d['noise_type']}-level noise, {d['layout']} ({d['entries']} entries, {d['captions']} captions), "
              f"images in [{d['min']}, {d['max']}], realised noise {d['realised']:.5f}, sha256 {d['sha256']} "
              f"(per caption)")
        tp = texts_path(f)
        if tp.is_file():
            texts = read_texts(tp, d["captions"])
            print(f"  {tp}: {len(texts)} corrupted caption texts (partial noise: {len(texts) / max(d['captions'], 1):.5f} "
                  f"of the captions), sha256 {texts_sha256(texts)}")
        if loaded is not None:
            _, ds, inputs = loaded
            kind = d["noise_type"] if d["noise_type"] != "none" else "caption"
            idx = load_noise_index(f, inputs.true_rows, inputs.n_rows, None, kind)
            print(_similarity_line(inputs, idx, 0))
    return 0


def _audit(args) -> int:
    from ..data.noise_spec import parse_noise_params
    from ..data.noise_models import build_params, get_model
    from ..noise_audit import audit_noise, ceiling_sweep, load_audit_data
    from ..registry import DATASETS

    card = DATASETS.get(args.dataset)
    data = load_audit_data(card, Path(args.data_root) if args.data_root else None,
                           Path(args.expert) if args.expert else None, Path(args.crowd) if args.crowd else None)
    given = parse_noise_params(args.noise_opt)
    models = []
    for name in filter(None, (m.strip() for m in args.models.split(","))):
        known = {k: v for k, v in given.items() if k in build_params(name)}
        get_model(name)
        models.append((name, build_params(name, known)))
    report = audit_noise(data, models, args.ratio, ints(args.seeds), args.noise_type)
    sweep = None if args.no_sweep else ceiling_sweep(data, args.ratio, noise_type=args.noise_type)
    if args.json:
        print(json.dumps({"audit": report.to_json(), "sweep": sweep.to_json() if sweep else None}, indent=1))
        return 0
    print(report.render())
    if sweep is not None:
        print()
        print(sweep.render())
    return 0
