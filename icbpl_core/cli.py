"""Command line: train, resume, export, runs.

    python -m icbpl_core train --dataset digits --runs-dir runs
    python -m icbpl_core export RUN_DIR --out labels.csv
    python -m icbpl_core runs --runs-dir runs
Progress goes to stderr; `train` and `resume` print the run folder as stdout's last line.
Exit codes: 0 ok, 1 the run failed (the message says why), 2 wrong arguments, 130 stopped.
"""
from __future__ import annotations

import argparse
import sys

from .augment import AUGMENTATIONS
from .config import TrainConfig

EXIT_FAILED, EXIT_USAGE, EXIT_STOPPED = 1, 2, 130


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2
        sys.stderr.write(f"{self.prog}: error: {message} (see {self.prog} --help)\n")
        sys.exit(EXIT_USAGE)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    from .backbones import backbone_names
    from .datasets import dataset_names
    from .features import PRECISIONS

    parser = _Parser(prog="python -m icbpl_core", description="ICBPL image clustering: train, export, list runs.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    d = TrainConfig()

    train = sub.add_parser("train", help="train a run on a dataset", description="Train ICBPL on a dataset.")
    data = train.add_argument_group("data")
    data.add_argument("--dataset", required=True, choices=dataset_names(), metavar="NAME",
                      help=f"one of: {', '.join(dataset_names())}")
    data.add_argument("--data-root", metavar="PATH", help="folder (or zip) holding the dataset's files")
    data.add_argument("--download", action="store_true", help="download the dataset if it is missing")
    data.add_argument("--limit", type=_positive_int, metavar="N", help="a seeded, class-balanced subset of N images")
    model = train.add_argument_group("model")
    model.add_argument("--backbone", choices=backbone_names(), metavar="NAME",
                       help=f"one of: {', '.join(backbone_names())} (default: the dataset's)")
    model.add_argument("--no-pretrained", dest="pretrained", action="store_false", help="random backbone weights")
    model.add_argument("--weights", metavar="FILE", help="a local weights file for the backbone")
    model.add_argument("--mode", choices=["auto", "head", "finetune"], default="auto",
                       help="head: train the head on cached features; finetune: train on images (default: auto)")
    model.add_argument("--image-size", type=_positive_int, metavar="PX",
                       help="backbone input size (default: the dataset's; 96 for grey images of 32 px "
                            "or less; else the backbone's own)")
    model.add_argument("--augment", choices=["auto", *AUGMENTATIONS], default="auto",
                       help="augmentation of the views (auto: grey for small grey images, simclr otherwise)")
    model.add_argument("--views", type=int, default=4, metavar="V",
                       help="augmented views per image (default 4): cached features in head mode, "
                            "and the copies the prediction averages over in both modes")
    model.add_argument("--no-average-views", dest="average_views", action="store_false",
                       help="predict from the image's latent alone, not the mean over it and its views")
    model.add_argument("--precision", choices=PRECISIONS, default="auto",
                       help="feature extraction arithmetic; auto: bf16 on CPUs with bf16 instructions, else fp32")
    model.add_argument("--cache-dir", metavar="DIR", help="feature cache (default ~/.cache/icbpl or $ICBPL_CACHE_DIR)")
    opt = train.add_argument_group("training (defaults: TrainConfig's, then the dataset's recipe)")
    opt.add_argument("--clusters", type=int, metavar="K", help=f"number of clusters (default {d.n_clusters})")
    for flag, field_name, kind in (("--epochs", "epochs", _positive_int), ("--batch-size", "batch_size", _positive_int),
                                   ("--lr", "lr", float), ("--latent-dim", "latent_dim", _positive_int),
                                   ("--hidden-dim", "hidden_dim", _positive_int)):
        opt.add_argument(flag, type=kind, help=f"default {getattr(d, field_name)}")
    for term, help_text in (("mmd", "MMD to PEDCC"), ("aug", "augmentation consistency"),
                            ("knn", "nearest-neighbour"), ("cos", "minimum cosine distance")):
        opt.add_argument(f"--w-{term}", type=float,
                         help=f"weight of the {help_text} loss (default {getattr(d, f'w_{term}')})")
    opt.add_argument("--neighbors", type=_positive_int, help=f"k of the neighbour loss (default {d.n_neighbors})")
    opt.add_argument("--neighbours-from", default="auto", metavar="SOURCE",
                     help="features the neighbours are mined in: backbone (a pretrained encoder's own), "
                          "pixels, or a pretrained backbone's name; auto (default): backbone, or for a "
                          "scratch encoder the dataset's choice (digits: mobilenet_v2_mid, else pixels)")
    opt.add_argument("--refresh-every", type=int, metavar="R",
                     help=f"re-mine neighbours in latent space every R epochs, 0: never (default {d.refresh_every})")
    opt.add_argument("--heads", type=_positive_int, metavar="H",
                     help=f"heads trained together; the lowest-loss one predicts (default {d.n_heads})")
    opt.add_argument("--select-head-after", type=int, metavar="E",
                     help=f"head mode with several heads: only the lowest-loss one trains on after E epochs, "
                          f"0: never (default {d.select_head_after})")
    opt.add_argument("--seed", type=int, default=d.seed)
    train.add_argument("--runs-dir", required=True, metavar="DIR", help="where run folders are created")
    train.add_argument("--quiet", action="store_true", help="no progress on stderr")

    resume = sub.add_parser("resume", help="continue a stopped run from its last checkpoint")
    resume.add_argument("run_dir", metavar="RUN_DIR")
    resume.add_argument("--cache-dir", metavar="DIR")
    resume.add_argument("--quiet", action="store_true")

    export = sub.add_parser("export", help="write a run's cluster labels as CSV")
    export.add_argument("run_dir", metavar="RUN_DIR")
    export.add_argument("--out", required=True, metavar="FILE.csv")

    runs = sub.add_parser("runs", help="list runs with their status and metrics")
    runs.add_argument("--runs-dir", required=True, metavar="DIR")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return {"train": _train, "resume": _resume, "export": _export, "runs": _runs}[args.command](args)
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
        return EXIT_STOPPED


def _spec_from_args(args):
    from .pipeline import RunSpec

    train = TrainConfig.for_dataset(
        args.dataset, n_clusters=args.clusters, latent_dim=args.latent_dim, hidden_dim=args.hidden_dim,
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, w_mmd=args.w_mmd, w_aug=args.w_aug,
        w_knn=args.w_knn, w_cos=args.w_cos, n_neighbors=args.neighbors, refresh_every=args.refresh_every,
        n_heads=args.heads, select_head_after=args.select_head_after, seed=args.seed)
    return RunSpec(dataset=args.dataset, data_root=args.data_root, download=args.download, limit=args.limit,
                   backbone=args.backbone, pretrained=args.pretrained, weights=args.weights, mode=args.mode,
                   image_size=args.image_size, augment=args.augment, n_views=args.views,
                   average_views=args.average_views, precision=args.precision,
                   neighbours_from=args.neighbours_from, train=train)


def _train(args) -> int:
    from .pipeline import ConfigError
    from .runs import create_run

    try:
        spec = _spec_from_args(args).resolved()
        spec.train.validate()
    except (ConfigError, ValueError) as exc:
        return _fail(str(exc), EXIT_USAGE)
    run = create_run(args.runs_dir, spec.to_dict())
    return _execute(spec, run, resume=False, args=args)


def _resume(args) -> int:
    from .pipeline import RunSpec
    from .runs import RunError, open_run

    try:
        run = open_run(args.run_dir)
    except RunError as exc:
        return _fail(str(exc), EXIT_FAILED)
    if run.state == "running":
        return _fail(f"run {run.id} is still running (pid {run.status().get('pid')})", EXIT_FAILED)
    if run.state == "finished":
        return _fail(f"run {run.id} has already finished", EXIT_FAILED)
    return _execute(RunSpec.from_dict(run.config), run, resume=True, args=args)


def _execute(spec, run, resume: bool, args) -> int:
    from . import pipeline
    from .trainer import StopRequested

    print(f"run folder: {run.path}", file=sys.stderr)
    try:
        metrics = pipeline.run(spec, run, resume=resume, on_event=None if args.quiet else _print_event,
                               cache_dir=args.cache_dir)
    except StopRequested as exc:
        print(f"{exc}; continue with: python -m icbpl_core resume {run.path}", file=sys.stderr)
        print(run.path)
        return EXIT_STOPPED
    except Exception as exc:  # noqa: BLE001 - every failure is recorded in the run and shown in one line
        return _fail(f"{exc} (run folder: {run.path})", EXIT_FAILED)
    if not args.quiet and "acc" in metrics:
        print(f"ACC {metrics['acc']:.4f}  NMI {metrics['nmi']:.4f}  ARI {metrics['ari']:.4f}  "
              f"clusters used {metrics['n_clusters_used']}/{metrics['n_clusters']}", file=sys.stderr)
    print(run.path)
    return 0


def _export(args) -> int:
    from .export import export_csv
    from .runs import RunError, open_run

    try:
        rows = export_csv(open_run(args.run_dir), args.out)
    except RunError as exc:
        return _fail(str(exc), EXIT_FAILED)
    print(f"wrote {rows} rows to {args.out}", file=sys.stderr)
    return 0


def _runs(args) -> int:
    from .runs import list_runs

    runs = list_runs(args.runs_dir)
    if not runs:
        print(f"no runs in {args.runs_dir}", file=sys.stderr)
        return 0
    header = f"{'run':<48} {'state':<11} {'epoch':>7} {'acc':>6} {'nmi':>6} {'ari':>6}"
    print(header)
    for run in runs:
        s = run.summary()
        epoch = f"{s['epoch'] or 0}/{s['epochs'] or '?'}"
        fmt = lambda v: f"{v:.3f}" if isinstance(v, (int, float)) else "-"  # noqa: E731
        print(f"{s['run']:<48} {s['state']:<11} {epoch:>7} {fmt(s['acc']):>6} {fmt(s['nmi']):>6} {fmt(s['ari']):>6}")
    return 0


def _print_event(event: dict) -> None:
    kind = event["type"]
    if kind == "epoch":
        losses = " ".join(f"{k} {v:.3f}" for k, v in event["losses"].items() if k != "total")
        metrics = "  ".join(f"{k.upper()} {v:.3f}" for k, v in event.get("metrics", {}).items())
        line = (f"epoch {event['epoch']}/{event['epochs']}  loss {event['losses']['total']:.3f} ({losses})  "
                f"clusters {event['n_clusters_used']}  {metrics}  {event['seconds']:.1f}s")
    elif kind == "extract":
        line = f"extracting {event['what']}: {event['done']}/{event['total']}"
    elif kind == "data":
        line = (f"{event['n_images']} images {'x'.join(map(str, event['shape']))}, backbone {event['backbone']}, "
                f"mode {event['mode']}, augmentation {event['augment']}"
                + ("" if event["labels"] else ", no labels"))
    elif kind == "skipped":
        line = f"skipped {event['count']} unreadable file(s): " + "; ".join(event["files"][:5])
    elif kind == "resumed":
        line = f"resumed after epoch {event['epoch']}"
    else:
        return
    print(line, file=sys.stderr, flush=True)


def _fail(message: str, code: int) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code
