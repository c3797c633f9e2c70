"""``ncbench noise info|make``: inspect or generate noise-index files."""

from __future__ import annotations

from ..errors import ConfigError

NAMES = ("noise",)

# ``noise make --captions``: at least 1 and at most 20 million, 35 times COCO's 566,435 training
# captions (the index is 8 bytes a caption, several copies of it while shuffling: ~1 GB at the cap)
MAX_CAPTIONS = 20_000_000


def add_parser(sub) -> None:
    nz = sub.add_parser("noise", help="make or inspect noise-index files")
    nsub = nz.add_subparsers(dest="noise_command", metavar="ACTION", required=True)
    ni = nsub.add_parser("info", help="layout, noise type, length, value range, sha256 and realised noise ratio of "
                                      "index files")
    ni.add_argument("files", nargs="+")
    ni.add_argument("--captions-per-image", type=int, default=5, help="captions per image row (default: 5)")
    nm = nsub.add_parser("make", help="generate an index with the papers' caption or image shuffle")
    nm.add_argument("--captions", type=int, required=True, help="number of training captions (F30K: 145000)")
    nm.add_argument("--captions-per-image", type=int, default=5)
    nm.add_argument("--ratio", type=float, required=True)
    nm.add_argument("--type", dest="noise_type", choices=("caption", "image"), default="caption",
                    help="caption-level (NCR) or image-level (DECL/RCL) noise (default: caption)")
    nm.add_argument("--seed", type=int, default=0)
    nm.add_argument("--out", required=True, help="output .npy (one entry per caption)")


def command(args) -> int:
    import numpy as np

    from ..data.noise import describe_index_file, make_noise_index, save_noise_index

    cpi = args.captions_per_image
    if cpi < 1:
        raise ConfigError(f"--captions-per-image must be ≥ 1, got {cpi}")
    if args.noise_command == "make":
        if not 1 <= args.captions <= MAX_CAPTIONS:
            raise ConfigError(f"--captions must be between 1 and {MAX_CAPTIONS:,} (COCO has 566,435), got {args.captions}")
        true = np.arange(args.captions, dtype=np.int64) // cpi
        idx = make_noise_index(true, args.ratio, args.seed, args.noise_type)
        save_noise_index(idx, args.out)
        print(f"{args.out}: {args.noise_type}-level, ratio {args.ratio:g} -> realised {idx.realised_ratio:.5f}, "
              f"sha256 {idx.sha256}")
        return 0
    for f in args.files:
        d = describe_index_file(f, cpi)
        print(f"{f}: {d['noise_type']}-level noise, {d['layout']} ({d['entries']} entries, {d['captions']} captions), "
              f"images in [{d['min']}, {d['max']}], realised noise {d['realised']:.5f}, sha256 {d['sha256']} "
              f"(per caption)")
    return 0
