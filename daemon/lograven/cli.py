"""Command line: parses arguments and calls library functions (which tests call too)."""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import stat
import signal
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from lograven import __version__
from lograven.alerts import _printable
from lograven.errors import LogravenError, quoted
from lograven.osutil import as_user, whoami

log = logging.getLogger("lograven")

EPILOG_MAIN = """\
examples:
  lograven demo                                   live demo on a synthetic syslog stream
  lograven train --out /tmp/model /var/log/messages
  lograven types /tmp/model
  lograven score --model /tmp/model /var/log/messages > verdicts.jsonl
  lograven evaluate --structured Linux_2k.log_structured.csv
  lograven run --config /etc/lograven/config.yaml
  lograven check --config /etc/lograven/config.yaml

Each command has its own --help with more examples.
"""


class _Formatter(argparse.RawDescriptionHelpFormatter):
    pass


def _at_least_one(text: str) -> int:
    """An argparse type: a whole number of at least 1 (`--max-lines 0` meant the default, -5 one line)."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"{n}: give at least 1")
    return n


def _add(sub, name: str, help: str, epilog: str) -> argparse.ArgumentParser:
    # allow_abbrev=False: `--alert ID` must not quietly mean `--alerts FILE`
    return sub.add_parser(name, help=help, description=help, epilog=epilog, formatter_class=_Formatter, allow_abbrev=False)


def _format_args(p: argparse.ArgumentParser, model_default: bool = False, config_stream: bool = True) -> None:
    """--format and --stream(-key); `model_default`: without them or --config, lines are read as the
    model's were (score, learn); `config_stream`: --config's first source gives the default stream
    (not for evaluate)."""
    whose = "--config's first source, else the model's, else" if model_default else "--config's first source, else"
    p.add_argument(
        "--format", dest="fmt", default=None,
        help="line format: syslog (RFC 3164/5424), iso, raw, or regex:<pattern> with a (?P<message>...) group "
             f"(default: {whose} syslog)",
    )  # fmt: skip
    g = p.add_mutually_exclusive_group()
    g.add_argument("--stream-key", default=None, metavar="REGEX",
                   help="stream = first capture group (or group 'stream') of REGEX searched in each line, e.g. 'blk_-?\\d+'")
    g.add_argument("--stream", default=None, choices=["file", "program"],
                   help=f"stream = each file or each program within a file (default: {whose if config_stream else ''} file)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="lograven",
        description="lograven learns what a host's logs normally look like and says when something unusual happens.",
        epilog=EPILOG_MAIN,
        formatter_class=_Formatter,
        allow_abbrev=False,
    )
    p.add_argument("--version", action="version", version=f"lograven {__version__}")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more log output (repeat for debug)")
    p.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors (`run` logs at INFO by default)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    t = _add(sub, "train", "learn message types, the sequence GRU and the autoencoder from log files into a bundle",
             "examples:\n  lograven train --out /tmp/m /var/log/messages\n"
             "  lograven train --format syslog --out /tmp/m --plots Linux_2k.log\n"
             "  lograven train --format 'regex:^\\d+ \\d+ \\d+ (?P<program>\\S+) (?P<message>.*)' --stream-key 'blk_-?\\d+' --out /tmp/hdfs hdfs.log")
    t.add_argument("--config", help="YAML config (training.* and detectors.* options); defaults if omitted")
    t.add_argument("--out", required=True, help="bundle directory to write (replaced atomically); a model directory "
                   "(versions and `current`, such as /var/lib/lograven/models): its next version, not made current")
    _format_args(t)
    t.add_argument("--max-lines", type=_at_least_one, default=None, help="use at most this many lines (default: learn.max_lines)")
    t.add_argument("--plots", action="store_true", help="write PNG plots into DIR/plots/ (needs matplotlib)")
    t.add_argument("--json", action="store_true", help="print the summary as JSON")
    t.add_argument("logfiles", nargs="+", metavar="LOGFILE", help="log files; - reads standard input (e.g. zcat ... | lograven train -)")

    ty = _add(sub, "types", "list the message types of a bundle",
              "examples:\n  lograven types /tmp/m\n  lograven types --json /tmp/m | jq '.[0]'")
    ty.add_argument("model", metavar="MODEL", help="bundle directory, or a model directory (numbered versions + current)")
    ty.add_argument("--json", action="store_true", help="JSON array instead of a table")
    ty.add_argument("--examples", action="store_true", help="show example lines in the table (the JSON always has them)")

    s = _add(sub, "score", "score log lines with a bundle: one JSON verdict per input line (schema: docs/score.md)",
             "examples:\n  lograven score --model /tmp/m /var/log/messages\n"
             "  tail -n 1000 /var/log/messages | lograven score --model /tmp/m -\n"
             "  lograven score --model /tmp/m --anomalies-only app.log | jq .")
    s.add_argument("--model", required=True, help="a bundle, or a model directory (its current version)")
    s.add_argument("--config", help="YAML config (detectors.* options)")
    _format_args(s, model_default=True)
    s.add_argument("--batch-size", type=_at_least_one, default=1024, help="lines per inference batch (default 1024)")
    s.add_argument("--anomalies-only", action="store_true", help="print only anomalous lines")
    s.add_argument("files", nargs="+", metavar="FILE", help="log files, or - for standard input")

    c = _add(sub, "check", "validate a config file (and its model bundle, if one is configured)",
             "examples:\n  lograven check --config /etc/lograven/config.yaml\n  lograven check --config config.example.yaml")
    c.add_argument("--config", required=True)
    c.add_argument("--user", metavar="NAME",
                   help="as root, also check that user NAME may read the sources and the model, as the service "
                        f"will (default: {SERVICE_USER}, when that user exists; `--user root` checks as root only)")
    c.add_argument("--stdin", action="store_true",
                   help="check the config for plugin mode (`run --stdin`): a model is required, the sources' paths are "
                        "not read; with --user, that user (the shipper's) must write state_dir and the alerts file")
    r = _add(sub, "run", "run the daemon: tail the configured files, detect, alert to syslog/JSON lines, serve metrics",
             "examples:\n  lograven run --config /etc/lograven/config.yaml\n"
             "  lograven run --config config.yaml --stdin      # plugin mode behind rsyslog omprog (docs/operations.md)\n"
             "signals: SIGHUP reloads config and model, SIGTERM checkpoints and exits.\n"
             "Without `model:` it first learns a model from the files' existing content (learn mode).")
    r.add_argument("--config", help="YAML config (default: built-in defaults, i.e. /var/log/messages and /var/log/syslog)")
    r.add_argument("--stdin", action="store_true", help="plugin mode: read lines on stdin, print OK per line (omprog confirmMessages)")

    m = _add(sub, "models", "list the numbered model versions of a model directory, roll back, or delete old ones",
             "examples:\n  lograven models list --dir /var/lib/lograven/models\n"
             "  lograven models rollback --dir /var/lib/lograven/models           # to the previous version\n"
             "  lograven models rollback --dir /var/lib/lograven/models --to v0002\n"
             "  lograven models prune --dir /var/lib/lograven/models --keep 5     # delete all but the newest 5\n"
             "The daemon notices the switch of `current` within seconds (or send SIGHUP).\n"
             "Periodic relearning prunes by itself, to learn.keep_versions; `current` is never deleted.")
    m.add_argument("action", choices=["list", "rollback", "prune"])
    m.add_argument("--dir", help="model directory (default: <state_dir>/models of --config)")
    m.add_argument("--config", help=f"YAML config, for its state_dir (default: $LOGRAVEN_CONFIG or {INSTALLED_CONFIG} when it exists)")
    m.add_argument("--to", help="version to switch to (rollback)")
    m.add_argument("--keep", type=int, help="versions to keep (prune; default: learn.keep_versions of --config, 10)")
    m.add_argument("--json", action="store_true")
    le = _add(sub, "learn", "the corrective action: learn new normal data into an existing model, keeping type ids",
              "examples:\n  lograven learn --model /var/lib/lograven/models /var/log/messages.1   # new version, made current\n"
              "  lograven learn --model /var/lib/lograven/models --from-alerts /var/log/lograven/alerts.jsonl --alert 1m84dq0jag9hmsnh\n"
              "  lograven learn --model /tmp/m --out /tmp/m2 new-normal.log\n"
              "Into a model directory, a running daemon picks up the new current version within seconds (or on\n"
              "SIGHUP). With --out, point the daemon's `model:` at the new bundle and reload (systemctl reload lograven).")
    le.add_argument("--model", required=True, help="model directory (numbered versions + current) or a single bundle")
    le.add_argument("--out", help="where to write the new bundle (required for a single bundle)")
    le.add_argument("--config", help="YAML config (training.* options, the sources the alerts' lines come from; with "
                                     f"--from-alerts, default: $LOGRAVEN_CONFIG or {INSTALLED_CONFIG} when it exists)")
    _format_args(le, model_default=True)
    le.add_argument("--from-alerts", metavar="ALERTS.jsonl",
                    help="learn alerted lines (with their context, read back from the files): name them with "
                         "--alert ID, or give --all-alerts")
    le.add_argument("--alert", action="append", default=[], metavar="ID",
                    help="with --from-alerts: the alert to learn, a false alarm (repeatable)")
    le.add_argument("--all-alerts", action="store_true",
                    help="with --from-alerts and no --alert: learn every alert of the file (one you reviewed, e.g. "
                         "filtered with jq); real anomalies among them become normal")
    le.add_argument("--max-lines", type=_at_least_one, default=None, help="use at most this many lines")
    le.add_argument("--json", action="store_true", help="print the summary as JSON")
    le.add_argument("logfiles", nargs="*", metavar="LOGFILE")

    al = _add(sub, "allow", "allowlist a legitimate alert pattern at once, without retraining",
              "examples:\n  lograven allow 1m84dq0jag9hmsnh                    # the pattern of this alert (from alerts.jsonl)\n"
              "  lograven allow --type 33 --detector autoencoder --expires 7d --comment 'new backup job'\n"
              "  lograven allow --transition 35,33                  # type 35 followed by type 33\n"
              "  lograven allow --file '/var/log/test-*.log'\n"
              "  lograven allow --list\n  lograven allow --remove r1a2b3c4\n"
              "Suppressed alerts are counted in lograven_alerts_suppressed_total{reason=\"allowlist\"}.\n"
              "A running daemon applies changes within a second.")
    al.add_argument("alert_id", nargs="?", help="id of an alert in the JSON-lines alert file")
    al.add_argument("--config", help=f"YAML config (for the allowlist and alerts file paths; default: $LOGRAVEN_CONFIG or {INSTALLED_CONFIG} when it exists)")
    al.add_argument("--allowlist", help="allowlist file (default: alerts.allowlist, else <state_dir>/allowlist.json)")
    al.add_argument("--alerts", help="alerts file to look the id up in (default: alerts.jsonl.path)")
    al.add_argument("--any-file", action="store_true", help="with ALERT_ID: match in every file, not only the alert's")
    al.add_argument("--type", type=int, help="message type id (-1 = unknown messages: with --file only)")
    al.add_argument("--transition", metavar="FROM,TO", help="type FROM directly followed by type TO in a stream")
    al.add_argument("--file", metavar="GLOB", help="only alerts of files matching GLOB")
    al.add_argument("--detector", choices=["unknown_type", "sequence", "autoencoder", "stream_end"],
                    help="only alerts this detector raised (stream_end: alerts on streams that ended early); "
                         "alone, with --file only")
    al.add_argument("--expires", metavar="DURATION", help="e.g. 30m, 12h, 7d (default: never)")
    al.add_argument("--comment", default="", help="why (shown by --list)")
    al.add_argument("--list", action="store_true", help="list the rules")
    al.add_argument("--remove", metavar="RULE_ID", help="remove a rule")

    d = _add(sub, "demo", "live demo: the daemon on a synthetic syslog stream with injected anomalies",
             "examples:\n  lograven demo                     # until Ctrl-C\n  lograven demo --duration 60\n"
             "  lograven demo --every 3 --rate 50 --keep")
    d.add_argument("--duration", type=float, default=None, help="seconds to run (default: until Ctrl-C)")
    d.add_argument("--rate", type=float, default=20.0, help="normal lines per second (default 20)")
    d.add_argument("--every", type=float, default=6.0, help="seconds between injected anomalies (default 6)")
    d.add_argument("--model", help="bundle to use (default: $LOGRAVEN_DEFAULT_MODEL, else models/default of the "
                                    "source tree, which an installed wheel does not carry)")
    d.add_argument("--seed", type=int, default=None, help="generator seed")
    d.add_argument("--keep", action="store_true", help="keep the temporary log, state and alerts")
    d.add_argument("--json", action="store_true", help="print the summary as JSON at the end")
    _register_more(sub)
    return p


def _register_more(sub) -> None:
    """Commands implemented in other modules register here (kept apart so this file stays small)."""
    try:
        from lograven import cli_more
    except ImportError:
        return
    cli_more.register(sub, _add, _format_args)


def _load_config(path: str | None):
    from lograven.config import Config, load_config

    return load_config(path) if path else Config()


INSTALLED_CONFIG = "/etc/lograven/config.yaml"  # where the unit's ExecStart reads it


def _daemon_config(args, defaulted: bool = True):
    """For commands that act on the installed daemon's files (`allow`, `models`): --config, else the
    installed config when there is one and a path is left to it (`defaulted`), so that a bare
    `lograven allow ID` uses the daemon's paths."""
    installed = os.environ.get("LOGRAVEN_CONFIG") or INSTALLED_CONFIG  # the daemon's config elsewhere
    if args.config is None and defaulted and os.path.isfile(installed):
        args.config = installed
        print(f"(using {installed}; give --config to choose another)", file=sys.stderr)
    return _load_config(args.config)


def _stream_spec(args, cfg, recorded: dict | None = None) -> str:
    """--stream-key / --stream; else the first source of --config; else how the model's lines were read
    (`recorded`, see `_model_read_as`; `score` and `learn LOGFILE`); else one stream per file."""
    if getattr(args, "stream_key", None):
        from lograven.parsing import regex_stream_spec

        # the help's example 'blk_-?\d+' has no group: the whole match is the stream then
        return regex_stream_spec(args.stream_key)
    if getattr(args, "stream", None):
        return args.stream
    if not _own_sources(args, cfg) and recorded and "stream" in recorded:
        return recorded["stream"]
    return cfg.sources[0].stream if cfg.sources else "file"


def _fmt(args, cfg, recorded: dict | None = None) -> str:
    """--format; else the first source of a config that names sources; else the model's (`recorded`);
    else syslog."""
    if args.fmt:
        return args.fmt
    if not _own_sources(args, cfg) and recorded and "format" in recorded:
        return recorded["format"]
    return cfg.sources[0].format if cfg.sources else "syslog"


def _own_sources(args, cfg) -> bool:
    """Whether --config names sources (their format and stream then read the lines), rather than only
    giving `detectors` or `runtime`: its sources are then the defaults, which know nothing of the model
    (a config of detectors only made score read an HDFS model's lines as syslog: every line an alert)."""
    from lograven.config import Config

    return args.config is not None and tuple(cfg.sources) != tuple(Config().sources)


def _model_read_as(model: str) -> dict:
    """The format and stream the lines of a model (a bundle or a model directory) were read with, as
    its manifest records them ({} where unknown, or "mixed": learn mode over sources that differ).
    Without --format / --stream / --config, `score` and `learn` read lines so: a model trained one
    stream per program and scored one stream per file alerted on 2.4 times as many lines, unsaid."""
    from lograven.bundle import read_manifest
    from lograven.modelstore import resolve_model_path

    try:
        trained = read_manifest(resolve_model_path(model)).get("training") or {}
    except (LogravenError, OSError):
        return {}  # loading the model says what is wrong with it
    if not isinstance(trained, dict):
        return {}  # (likewise: load_bundle refuses it)
    if trained.get("read_as_recorded") is not True:
        return {}  # learn mode before 0.2.0 recorded the first source's settings, whatever the others' were
    return {k: v for k in ("format", "stream") if isinstance(v := trained.get(k), str) and v != "mixed"}


def _warn_read_otherwise(fmt: str, stream: str, recorded: dict, command: str) -> None:
    """Say where lines are read otherwise than the model's were (an explicit option, or the config)."""
    import shlex

    for what, now in (("format", fmt), ("stream", stream)):
        was = recorded.get(what)
        if was is not None and was != now:
            option = "--format" if what == "format" else "--stream-key" if was.startswith("regex:") else "--stream"
            value = was[len("regex:"):] if option == "--stream-key" else was
            print(f"lograven {command}: warning: reading lines with {what} {quoted(now)}, but the model was trained on "
                  f"lines read with {what} {quoted(was)}: they look unusual to it (many alerts). Give {option} "
                  f"{shlex.quote(value)} to read them as the model did", file=sys.stderr)


def _train_target(out: str, models_dir: Path):
    """Where `train --out` writes (a bundle's place, or a model directory), and the model directory when it
    writes one's next version: `--out` a model directory (versions and
    `current`), or the daemon's (`models_dir`, <state_dir>/models, before it holds a version: learn mode
    not done yet), writes its next version, not made current. The version `current` names is refused
    (an admin following the docs had replaced the model a running daemon used; the daemon went on with
    the old one until a SIGHUP)."""
    from lograven.modelstore import ModelStore

    path = Path(out)
    daemons = os.path.realpath(path) == os.path.realpath(models_dir) and (not path.exists() or (
        path.is_dir() and not path.is_symlink() and not any(path.iterdir())))
    if daemons or (path.is_dir() and not path.is_symlink() and ModelStore.is_store(path)):
        return path, ModelStore(path)
    parent = path.parent
    if parent.is_dir() and ModelStore.is_store(parent) and path.exists():
        try:
            current = ModelStore(parent).current_path()
        except LogravenError:
            current = None
        if current is not None and os.path.realpath(current) == os.path.realpath(path):
            raise LogravenError(
                f"--out {out}: is the version in use ({parent}/current names it); give --out {parent} to write "
                f"its next version, then `lograven models rollback --dir {parent} --to` that version to use it")
    return path, None


def cmd_train(args) -> int:
    from lograven.progress import ProgressBar
    from lograven.training import read_corpus, train

    cfg = _load_config(args.config)
    fmt, stream = _fmt(args, cfg), _stream_spec(args, cfg)
    from lograven.parsing import Parser, StreamKey

    Parser(fmt), StreamKey(stream)  # fail fast on a bad --format / --stream-key
    from lograven.bundle import check_bundle_target

    out, store = _train_target(args.out, cfg.models_dir())
    if store is None:
        check_bundle_target(out, "--out")  # an unwritable or full --out fails now, not after the training
    else:
        from lograven.bundle import check_room_for_a_version

        check_room_for_a_version(store.root, "--out")  # where new_version_path() saves
        out = store.new_version_path()  # reserved: a learn run at the same moment takes the next number
    max_lines = args.max_lines or cfg.learn.max_lines
    bar = ProgressBar(enabled=not args.quiet)
    bar("reading", 0.0)
    corpus = read_corpus(args.logfiles, fmt=fmt, stream=stream, max_lines=max_lines, max_line_bytes=cfg.runtime.max_line_bytes)
    bar("reading", 1.0)
    _warn_unparsed(corpus, fmt)
    _warn_line_budget(corpus, args.logfiles, max_lines)
    try:
        result = train(
            corpus, Path(out), training=cfg.training, quantile=cfg.detectors.autoencoder.quantile,
            fmt=fmt, stream=stream, plots=args.plots, progress=bar, end_gap=cfg.detectors.sequence.stream_end_after,
        )  # fmt: skip
    except BaseException:
        if store is not None:
            store.release(Path(out))
        raise
    bar.close()
    if store is not None:
        print(f"version {Path(out).name} written to {store.root} (not in use yet): `lograven models rollback --dir "
              f"{store.root} --to {Path(out).name}` makes it current; a running daemon switches within seconds",
              file=sys.stderr)
    s = result.summary
    if args.json:
        print(json.dumps(s, indent=2))
        return 0
    v = s.get("sequence_validation", {})
    print(f"bundle written to {result.path}")
    print(f"  lines       {s['lines']} from {len(s['files'])} file(s), {s['streams']} stream(s), {s['unparsed_lines']} not in format {fmt}")
    print(f"  types       {s['types']} message types ({s['clusters']} clusters); `lograven types {result.path}` lists them")
    fp = v.get("fp_rate_relative<0.1")
    fp_text = f", {fp:.2%} of held-back normal steps would alert (relative rule at 0.1)" if fp is not None else ""
    top1 = v.get("top1_accuracy")
    top1_text = f"{top1:.3f}" if isinstance(top1, (int, float)) and math.isfinite(top1) else "n/a (too few lines held back)"
    print(f"  sequence    {s['sequence_epochs']} epochs; held-back top-1 accuracy {top1_text}{fp_text}")
    if v.get("cross_fitted"):
        print(f"              an ensemble of {v['cross_fitted']} GRUs, cross-fitted: every training session held back "
              f"once ({v.get('steps', 0)} steps), by the member that did not train on it")  # fmt: skip
    from lograven.sequence import FEW_CALIBRATION_STEPS, MIN_FLOOR_STEPS

    steps = int(v.get("steps", 0) or 0)
    if steps < MIN_FLOOR_STEPS:
        print(f"              not calibrated: {steps} held-back steps, calibration and the floor need {MIN_FLOOR_STEPS} "
              f"(train on about {10 * MIN_FLOOR_STEPS:,} lines or more); the configured thresholds apply")  # fmt: skip
    elif steps < FEW_CALIBRATION_STEPS and _judges_by_calibration(cfg):
        print(f"              calibrated on only {steps:,} held-back steps: the rule is as loose as the rarest of them, "
              f"and a model of so few lines finds never-seen transitions about as probable, so it may miss them; "
              f"train on {20 * FEW_CALIBRATION_STEPS:,} lines or more (a longer history) for a sharper sequence rule")  # fmt: skip
    if s["lines"] < MIN_TRAINING_LINES:
        print(f"warning: only {s['lines']} lines; a model needs a few hundred normal lines at least, and thousands "
              "to learn the host's sequences well", file=sys.stderr)  # fmt: skip
    if s.get("stream_end_after"):
        print(f"  ends        streams cut at {s['stream_end_after']:g} s of silence "
              f"(detectors.sequence.stream_end_after): {s['stream_segments']} segments, {s['segments_ended']} taught as ended")
    print(f"  autoencoder {s['autoencoder_epochs']} epochs; length {s['autoencoder_length']}, threshold {s['autoencoder_threshold']:.3f} nats/token")
    if s.get("truncated_lines"):
        print(f"  truncated   {s['truncated_lines']} line(s) longer than runtime.max_line_bytes ({cfg.runtime.max_line_bytes}), cut to it")
    if s["lines"] and s.get("catch_all_lines", 0) >= CATCH_ALL_WARN_SHARE * s["lines"]:
        print(f"warning: {len(s['catch_all_types'])} message type(s) are mostly wildcards (`lograven types {result.path}`: "
              f"`<*> <*> <*> ...`) and cover {s['catch_all_lines'] / s['lines']:.0%} of the lines: any message of "
              "those lengths counts as known, so new messages go unnoticed. The log has too many distinct messages "
              "for its size, or the wrong --format: train on more lines of the same host, check --format, or add "
              "training.msgtypes.extra_masks for the variable parts", file=sys.stderr)  # fmt: skip
    sec = s["seconds"]
    print(f"  seconds     {sec['total']:.1f} (types {sec['msgtypes']:.1f}, sequence {sec['sequence']:.1f}, autoencoder {sec['autoencoder']:.1f})")
    if args.plots:
        print(f"  plots       {result.path}/plots/*.png")
    return 0


def _judges_by_calibration(cfg) -> bool:
    """Whether the config's sequence detector uses a calibrated threshold (so few held-back steps matter)."""
    seq = cfg.detectors.sequence
    return seq.enabled and seq.calibrate and seq.rule != "top_k"


CATCH_ALL_WARN_SHARE = 0.2  # of the training lines in mostly-wildcard types (0 on the Loghub 2k sets, 0.86+ on noise)


def _warn_unparsed(corpus, fmt: str) -> None:
    """Before minutes of training: most lines not in the format means the wrong --format; so does a
    timestamp group that holds no timestamp."""
    from lograven.parsing import mostly_unparsed

    if mostly_unparsed(corpus.unparsed, len(corpus)):
        files = sorted(set(corpus.files))
        log.warning("%d of %d lines of %s do not match --format %s: their timestamps and hosts would be learned as "
                    "message text. Give the files' --format (syslog, iso, raw or regex:...; docs/configuration.md)",
                    corpus.unparsed, len(corpus), ", ".join(files[:3]) + (" ..." if len(files) > 3 else ""), fmt)  # fmt: skip
    if corpus.misread:
        log.warning("%s; then retrain", corpus.misread)


def cmd_types(args) -> int:
    from lograven.bundle import load_bundle
    from lograven.modelstore import resolve_model_path

    path = resolve_model_path(args.model)  # a bundle, or a model directory (its current version), as `score` takes
    b = load_bundle(path)
    types = b.types.types_
    if args.json:
        print(json.dumps([{"id": t.id, "count": t.count, "template": t.template, "regex": t.regex, "examples": t.examples} for t in types], indent=1, ensure_ascii=False))
        return 0
    where = args.model if path == Path(args.model) else f"{args.model}, current version {path.name}"
    print(_printable(f"{len(types)} message types in {where} (model {b.version})"))
    print(f"{'id':>5} {'count':>8}  template / regex")

    for t in types:
        print(f"{t.id:>5} {t.count:>8}  {_printable(t.template)}")
        print(f"{'':>15}{_printable(t.regex)}")
        if args.examples:
            for e in t.examples:
                print(f"{'':>15}e.g. {_printable(e)}")
    return 0


def iter_input_lines(files: Sequence[str], max_line_bytes: int) -> Iterator[tuple[str, int, str]]:
    """(file, 1-based line number, decoded text) for files or '-' (stdin). Lines longer than
    `max_line_bytes` are cut to it without ever being held whole (training.iter_binary_lines)."""
    from lograven.osutil import stdin_binary
    from lograven.training import iter_file_lines, iter_maybe_compressed

    for f in files:
        if f == "-":
            for i, (text, _) in enumerate(iter_maybe_compressed(stdin_binary(), "-", max_line_bytes), 1):
                yield "-", i, text
        else:
            for i, (text, _) in enumerate(iter_file_lines(f, max_line_bytes), 1):
                yield f, i, text


def verdict_json(file: str, line: int, stream: str, rec, v, detector, blank: bool = False) -> dict:
    from lograven.alerts import _text as utf8_text

    return {
        "file": utf8_text(file),  # a file name's undecodable bytes are U+FFFD, as a line's are
        "line": line,
        "stream": utf8_text(stream),
        "parsed": None if blank else rec.parsed,  # a blank line: nothing to parse (not judged)
        "type": v.type_id,
        "template": v.template,
        "type_count": detector.type_count(v.type_id),
        "anomaly": v.anomaly,
        "detectors": v.detectors,
        "sequence_part": v.sequence_part,
        "sequence_p": v.sequence_p,
        "sequence_rank": v.sequence_rank,
        "sequence_ratio": None if v.sequence_ratio is None else _sig6(v.sequence_ratio),
        "expected": [{"type": t, "p": _sig6(p), "template": detector.template(t)} for t, p in v.expected],
        "ae_error": None if v.ae_error is None or not math.isfinite(v.ae_error) else round(v.ae_error, 4),
        "ae_threshold": None if v.ae_threshold is None else round(v.ae_threshold, 4),
    }


class VerdictWriter:
    """`verdict_json` as text, fast: the JSON of strings that repeat (file and stream names,
    templates, detector lists) is encoded once and reused. Tests check it equals verdict_json."""

    def __init__(self, detector):
        self.det = detector
        self._s: dict[object, str] = {}

    def _str(self, x) -> str:
        j = self._s.get(x)
        if j is None:
            from lograven.alerts import _text as utf8_text

            # a file name's undecodable bytes (surrogate escapes) are U+FFFD, as a line's are
            j = json.dumps(utf8_text(x) if isinstance(x, str) else x, ensure_ascii=False)
            if len(self._s) < 100_000:
                self._s[x] = j
        return j

    def _tmpl(self, t: int) -> str:
        key = ("t", t)
        j = self._s.get(key)
        if j is None:
            j = self._s[key] = json.dumps(self.det.template(t), ensure_ascii=False)
        return j

    def line(self, file: str, n: int, stream: str, rec, v, blank: bool = False) -> str:
        num = _num
        exp = ", ".join(f'{{"type": {t}, "p": {num(_sig6(p))}, "template": {self._tmpl(t)}}}' for t, p in v.expected)
        return (
            f'{{"file": {self._str(file)}, "line": {n}, "stream": {self._str(stream)}, '
            f'"parsed": {"null" if blank else "true" if rec.parsed else "false"}, "type": {v.type_id}, "template": {self._tmpl(v.type_id)}, '
            f'"type_count": {self.det.type_count(v.type_id)}, '
            f'"anomaly": {"true" if v.anomaly else "false"}, "detectors": {self._str(tuple(v.detectors))}, '
            f'"sequence_part": {self._str(v.sequence_part)}, "sequence_p": {num(v.sequence_p)}, "sequence_rank": {num(v.sequence_rank)}, '
            f'"sequence_ratio": {num(None if v.sequence_ratio is None else _sig6(v.sequence_ratio))}, '
            f'"expected": [{exp}], '
            f'"ae_error": {num(None if v.ae_error is None else round(v.ae_error, 4))}, '
            f'"ae_threshold": {num(None if v.ae_threshold is None else round(v.ae_threshold, 4))}}}'
        )


def _num(x) -> str:
    if x is None:
        return "null"
    if isinstance(x, float) and not math.isfinite(x):  # JSON has no NaN or inf (an error a model overflowed on)
        return "null"
    return repr(x) if isinstance(x, float) else str(int(x))


def _sig6(x: float) -> float:
    """`x` to 6 significant digits: a tiny ratio keeps its size (rounded to 6 decimals, 3.4e-06 was 3e-06 and
    7.2e-07 was 1e-06: a review), as `evaluate` keeps it."""
    return float(f"{x:.6g}")


def _is_stream(path: str) -> bool:
    """A pipe, FIFO, socket or character device (`<(zcat x.gz)`, /dev/stdin): what is read from it is gone."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False  # opening it says why
    return stat.S_ISFIFO(mode) or stat.S_ISCHR(mode) or stat.S_ISSOCK(mode)


def cmd_score(args) -> int:
    from lograven.bundle import load_bundle
    from lograven.detector import Detector, DetectorSettings
    from lograven.parsing import Parser, StreamKey

    cfg = _load_config(args.config)
    recorded = _model_read_as(args.model)
    fmt, stream = _fmt(args, cfg, recorded), _stream_spec(args, cfg, recorded)
    parser, key = Parser(fmt), StreamKey(stream)
    _warn_read_otherwise(fmt, stream, recorded, "score")
    from lograven.modelstore import resolve_model_path

    # a bundle, or a model directory (<state_dir>/models: its current version)
    det = Detector(load_bundle(resolve_model_path(args.model)),
                   DetectorSettings.from_config(cfg.detectors, max_streams=cfg.runtime.max_streams))
    out = sys.stdout
    batch: list[tuple[str, int, str, object, str]] = []
    writer = VerdictWriter(det)

    def flush() -> None:
        verdicts = det.detect([(b[4], b[3]) for b in batch])
        lines = []
        for (f, n, text, rec, stream), v in zip(batch, verdicts):
            if args.anomalies_only and not v.anomaly:
                continue
            lines.append(writer.line(f, n, stream, rec, v, not text.strip()))
        if lines:
            out.write("\n".join(lines) + "\n")
        batch.clear()

    from lograven.training import iter_file_lines

    for f in args.files:  # every file readable before the first verdict: a bad path is not found halfway
        if f != "-" and not _is_stream(f):  # a pipe or FIFO is not read twice: its first lines would be lost
            next(iter_file_lines(f, 1), None)
    total = unparsed = 0
    try:
        started: set[str] = set()
        for f, n, text in iter_input_lines(args.files, cfg.runtime.max_line_bytes):
            if n == 1:
                if f in started:  # the same file again: its streams start fresh, as in its first reading
                    flush()
                    for name in [k for k in det.states if k == f or k.startswith(f + ":")]:
                        del det.states[name]
                started.add(f)
            rec = parser.parse(text)
            if text.strip():  # blank lines are not judged
                total += 1
                unparsed += not rec.parsed
            batch.append((f, n, text, rec, key.key(f, rec, text)))
            if len(batch) >= args.batch_size:
                flush()
    finally:  # a read error later on (a file gone meanwhile): the lines read so far keep their verdicts
        if batch:
            flush()
        out.flush()
    from lograven.parsing import misread_timestamps, mostly_unparsed

    if mostly_unparsed(unparsed, total):
        log.warning("%d of %d lines do not match --format %s (parsed: false); give the files' --format",
                    unparsed, total, fmt)  # fmt: skip
    said = misread_timestamps(parser)
    if said:
        log.warning("%s; give the files' --format (and the model's, if it was trained with this one)", said)
    if det.streams_evicted:
        log.warning("%d stream state(s) were forgotten: more than runtime.max_streams (%d) streams were open at "
                    "once (score never ends a stream), so the least recently seen started afresh and their next "
                    "lines were judged without history; raise runtime.max_streams in --config (at most 1,000,000)",
                    det.streams_evicted, det.settings.max_streams)  # fmt: skip
    return 0


def _detectors_in_force(bundle, cfg) -> str:
    """One line: the thresholds the daemon would use with this model and config (after calibration)."""
    from lograven.detector import LEARNED_FEW, Detector, DetectorSettings

    det = Detector(bundle, DetectorSettings.from_config(cfg.detectors))
    st = det.settings
    parts = []
    if st.sequence:
        rule = {"relative": f"p/p_train < {det.relative_threshold:.3g}", "probability": f"p < {det.probability_threshold:.3g}",
                "top_k": f"rank > {st.sequence_top_k}"}[st.sequence_rule]  # fmt: skip
        if st.sequence_rule != "top_k" and det.sequence_rule_value < st.rule_value:
            rule += f" (calibrated from {st.rule_value:g})"
        from lograven.sequence import FEW_CALIBRATION_STEPS, MIN_FLOOR_STEPS

        steps = int((getattr(bundle.sequence, "validation_", None) or {}).get("steps", 0) or 0)
        if st.sequence_calibrate and steps < MIN_FLOOR_STEPS:
            rule += f" (not calibrated: the model held back {steps} steps, calibration needs {MIN_FLOOR_STEPS})"
        elif st.sequence_calibrate and steps < FEW_CALIBRATION_STEPS and st.sequence_rule != "top_k":
            rule += (f" (calibrated on only {steps:,} held-back steps: may miss never-seen transitions; train on "
                     f"{20 * FEW_CALIBRATION_STEPS:,} lines or more)")
        if det.probability_floor > 0:
            rule += f", or p < {det.probability_floor:.3g} (floor)"
        if det.rare_type.any():
            rule += (f", or one of {int(det.rare_type.sum())} types seen < {st.sequence_rare_count} times in training "
                     "where it is not the most expected (rare type)")
        if det.unjudged_type.any():
            k = int(det.unjudged_type.sum())
            rule += (f"; {k} type{'s' if k > 1 else ''} made by learn from fewer than {LEARNED_FEW} lines "
                     f"{'are' if k > 1 else 'is'} not judged by where {'they appear' if k > 1 else 'it appears'}")
        ends = cfg.detectors.sequence.stream_end_after
        trained = bundle.stream_end_after
        if det.judges_stream_ends and ends > 0:
            rule += f"; stream ends judged after {ends:g} s idle"
            if st.sequence_rule != "top_k" and det.end_rule_value < st.rule_value:
                rule += f", an end flagged below {det.end_rule_value:.3g} (calibrated on held-back ends)"
            if trained and trained != ends:
                rule += f" (but the model learned ends at {trained:g} s of silence: set stream_end_after to {trained:g})"
            elif trained:
                rule += " or silent by the lines' timestamps, as the model learned them"
        elif ends > 0:
            rule += "; stream_end_after set, but this model did not learn stream ends"
        parts.append(f"sequence {rule}")
    if st.autoencoder:
        own = det.ae.type_thresholds_
        parts.append(f"autoencoder error > {det.ae_threshold:.3f}" + (
            f" ({len(own)} message type(s) learned with their own, up to {max(own.values()) * st.autoencoder_margin:.3f})"
            if own else ""))
    if st.unknown_type:
        parts.append("unknown_type")
    return "; ".join(parts) or "none enabled"


def _relative_paths(cfg, plugin: bool = False) -> list[str]:
    """Paths written relative: the daemon takes them from its working directory, `/` under systemd, while
    check (and a run by hand) takes them from the admin's: check passed what the service never found."""
    keys: list[tuple[str, str | None]] = [("model", cfg.model), ("state_dir", cfg.state_dir),
                                          ("alerts.allowlist", cfg.alerts.allowlist)]  # fmt: skip
    if cfg.alerts.jsonl.enabled:
        keys.append(("alerts.jsonl.path", cfg.alerts.jsonl.path))
    if cfg.alerts.syslog.enabled and not plugin:
        keys.append(("alerts.syslog.socket", cfg.alerts.syslog.socket))
    if not plugin:
        keys += [(f"sources[{i}].paths", p) for i, src in enumerate(cfg.sources) for p in src.paths]
    out = []
    for key, path in keys:
        if key == "state_dir" and not plugin and path and not os.path.isabs(os.path.expanduser(path)):
            out.append(f"state_dir: {path} is a relative path: under lograven.service its StateDirectory= wins "
                       "(/var/lib/lograven, $STATE_DIRECTORY); run otherwise, it is taken from the working directory "
                       f"({os.path.abspath(path)} from here); write the absolute path")  # fmt: skip
        elif path and not os.path.isabs(os.path.expanduser(path)):
            out.append(f"{key}: {path} is a relative path: the service takes it from its working directory, / "
                       f"under systemd ({os.path.join('/', path)}), not from here ({os.path.abspath(path)}); "
                       "write the absolute path")  # fmt: skip
    return out


def cmd_check(args) -> int:
    cfg = _load_config(args.config)
    stdin = getattr(args, "stdin", False)
    # what `run` refuses for every user, before "OK" (it was said after it: "configuration OK", then an error)
    paths = _output_paths(cfg)  # where `run` could not write: warned about below, and failed on when no user can
    # a path that cannot exist (a file where a directory must be) fails `run` for every user: not only a
    # warning, or `check && systemctl reload` passes a configuration the daemon then refuses
    for what, path, why in paths:
        if why.endswith(_STRUCTURAL):
            raise LogravenError(f"{args.config or 'the configuration'}: {what} {path}: {why}; choose another path")
    from lograven.metrics import listen_problem

    if cfg.metrics.enabled and not stdin and (problem := listen_problem(cfg.metrics.listen)):
        raise LogravenError(f"{args.config or 'the configuration'}: {problem}")
    if stdin and cfg.alerts.jsonl.enabled:
        from lograven.alerts import is_standard_output

        if is_standard_output(cfg.alerts.jsonl.path):
            from lograven.service import PLUGIN_STDOUT_JSONL

            raise LogravenError(f"{args.config}: " + PLUGIN_STDOUT_JSONL.format(path=cfg.alerts.jsonl.path))
    if stdin and not cfg.model:
        from lograven.modelstore import ModelStore

        try:
            learned = ModelStore(cfg.models_dir()).current_path() is not None
        except PermissionError:
            learned = True  # cannot look: root's or the user's check below says so
        if not learned:
            raise LogravenError(f"{args.config}: model: null, and {cfg.models_dir()} has no current version: plugin "
                                "mode (--stdin) needs a trained model; set `model:` to a bundle or model directory "
                                "(`lograven train --out DIR LOGFILE...`)")
    print(f"{args.config}: configuration OK")
    b = None  # the model `run` would load, if any
    if cfg.model:
        from lograven.bundle import load_bundle
        from lograven.modelstore import resolve_model_path

        b = load_bundle(resolve_model_path(cfg.model))  # a bundle, or a model directory as `run` accepts
        print(f"{cfg.model}: model bundle OK ({b.version}, {len(b.types.types_)} message types)")
        print(f"  detectors in force: {_detectors_in_force(b, cfg)}")
    else:
        from lograven.modelstore import ModelStore, resolve_model_path

        store = ModelStore(cfg.models_dir())
        try:
            current, denied = store.current_path(), False
            versions = store.versions()
        except PermissionError:  # /var/lib/lograven is 0750 lograven: a plain user cannot look
            current, denied, versions = None, True, []
        if denied:
            print(f"model: null -> cannot look in {store.root} (permission denied): run check as root or as the "
                  "service's user (`sudo -u lograven lograven check --config FILE`) to verify the learned model")
        elif current is None and versions:  # the start makes the newest that loads current
            print(f"model: null -> {store.root} has versions ({', '.join(versions[-3:])}) but none current: "
                  "the daemon makes the newest that loads current at its start (`lograven models rollback --dir "
                  f"{store.root} --to vNNNN` picks one)")
        elif current is None:
            print("model: null -> learn mode (learns from the configured files on first start)")
        else:  # learned already: the daemon runs the model directory's current version
            from lograven.bundle import load_bundle

            b = load_bundle(resolve_model_path(store.root))  # as `run` finds it: a dangling `current` says how to repair it
            print(f"model: null -> the learned model {store.root}/current = {current.name}: model bundle OK "
                  f"({b.version}, {len(b.types.types_)} message types)")
            print(f"  detectors in force: {_detectors_in_force(b, cfg)}")
    from lograven.service import source_warnings

    from lograven.allowlist import allowlist_problems

    if stdin:
        src = cfg.sources[0]
        print(f"plugin mode: lines come on standard input, parsed as format {src.format}, stream {src.stream} "
              "(the first source's; its paths are not read)")
        warnings = [*_relative_paths(cfg, plugin=True), *_output_warnings(cfg, plugin=True, paths=paths)]
        if cfg.learn.schedule_seconds:
            warnings.append("learn.schedule is not applied in plugin mode: run `lograven learn` on new normal data, "
                            "and the plugin follows the model directory's `current` version")
        warnings += allowlist_problems(cfg.allowlist_path())
        if args.user is None:
            print("the plugin runs as the shipper's user: add --user NAME to check that user can write state_dir and "
                  "the alerts file and read the model (Ubuntu's rsyslog: syslog; RHEL's: root)")
        else:
            warnings += [w for w in _service_user_warnings(cfg, args.user, plugin=True) if w not in warnings]
    else:
        warnings = [*_relative_paths(cfg), *source_warnings(cfg), *_output_warnings(cfg, paths=paths),
                    *allowlist_problems(cfg.allowlist_path())]
        warnings += [w for w in _service_user_warnings(cfg, args.user) if w not in warnings]
    if b is not None:
        from lograven.service import trained_with_warnings

        warnings += trained_with_warnings(b, cfg, stdin)
    for warning in warnings:
        print(f"warning: {warning}")
    return 0


#: The user lograven.service runs as (systemd/lograven.service: User=, with SupplementaryGroups=adm).
SERVICE_USER = "lograven"
#: The directories lograven.service may write (StateDirectory=, LogsDirectory=; ProtectSystem=strict
#: makes every other one read-only to it, whatever its permissions).
SERVICE_STATE_DIR = "/var/lib/lograven"
SERVICE_WRITABLE = (SERVICE_STATE_DIR, "/var/log/lograven")
SERVICE_GROUPS = ("adm",)


def _service_user_warnings(cfg, user: str | None, plugin: bool = False) -> list[str]:
    """As root, what the service's user could not read: the sources' files and the model. Root reads
    everything, so `sudo lograven check` passed while the daemon read nothing (no group adm, no ACL on
    /var/log/secure) or failed to load a model trained by root in a 0700 directory. For a plugin
    (`plugin`), the shipper's user: instead of the sources, the state_dir and alerts file it writes."""
    import pwd

    if user in ("root", ""):
        return []
    name = user or SERVICE_USER
    try:
        pw = pwd.getpwnam(name)
    except KeyError:
        if user is None:
            if os.geteuid() == 0:  # root reads and writes everything: say that its view is not the service's
                print(f"not checked as user {name}: there is no such user yet (install systemd/lograven.sysusers.conf "
                      "and run `systemd-sysusers`, as README says); root reads and writes every file, so the service "
                      "may fail where these checks pass")  # fmt: skip
            return []  # no service installed here: nothing to check as
        raise LogravenError(f"--user {name}: no such user") from None
    if os.geteuid() != 0:
        if user is not None and pw.pw_uid != os.geteuid():
            raise LogravenError(f"--user {name}: only root can check as another user (`sudo lograven check ...`)")
        return []  # this user's own view is what the checks above saw
    from lograven.service import source_warnings

    model = _model_entries(cfg)
    writable = (*SERVICE_WRITABLE, *_unit_rw_paths())  # asked of systemd once

    def work() -> list[str]:
        out = _output_warnings(cfg, plugin=True) if plugin else source_warnings(cfg)
        if not plugin:  # what the daemon writes (an admin's review: check passed, and the service restarted in a loop)
            for what, path, why in _output_paths(cfg):
                if _in_service_dirs(path, writable):
                    continue  # StateDirectory=, LogsDirectory=: systemd makes them the user's at the start
                folder = path if what == "state_dir" else path.parent
                usual = SERVICE_STATE_DIR if what == "state_dir" else "/var/log/lograven/alerts.jsonl"
                out.append(f"{what} {path}: {why} for user {name}; lograven.service (User={name}) would refuse to "
                           f"start: make the directory that user's (`install -d -o {name} {folder}`), or use {usual}")
        unreadable: list[str] = []
        for path, is_dir in model:
            if any(path.startswith(u + os.sep) for u in unreadable):
                continue  # inside a directory already named
            if is_dir:
                if not os.access(path, os.R_OK | os.X_OK):
                    unreadable.append(path)
                continue
            try:
                with open(path, "rb"):
                    pass
            except PermissionError:
                unreadable.append(path)
            except OSError:
                pass  # gone meanwhile, or a problem root's own check reports
        if unreadable:
            out.append(f"model: user {name} cannot read {', '.join(unreadable[:3])}{' …' if len(unreadable) > 3 else ''} "
                       f"(permission denied): `run` as that user would fail to load the model; give it to that user "
                       f"(`chown -R {name}: DIR`) or its group read access (`chmod -R g+rX DIR`)")  # fmt: skip
        return out

    try:
        found = as_user(name, work, SERVICE_GROUPS if user is None else ())
    except (OSError, RuntimeError) as e:
        return [f"could not check as user {name}: {e}"]
    what = "state_dir and the alerts file" if plugin else "the sources and what the daemon writes"
    print(f"checked {what}{' and the model' if model else ''} also as user {name}"
          f"{'' if user else ' (the user lograven.service runs as; --user NAME for another)'}")  # fmt: skip
    found = list(found)
    if not plugin and user is None:  # the unit's sandbox: every other directory is read-only to the service
        for key, path in (("state_dir", cfg.effective_state_dir()),
                          ("alerts.jsonl.path", Path(cfg.alerts.jsonl.path) if cfg.alerts.jsonl.enabled else None)):
            if path is None:
                continue
            if not _in_service_dirs(path, writable):
                found.append(f"{key} {path}: lograven.service may write only under {' and '.join(SERVICE_WRITABLE)} "
                             "(ProtectSystem=strict), so it would fail there whatever the permissions: keep it there, "
                             "or allow it with a drop-in (`systemctl edit lograven`: [Service] ReadWritePaths=DIR)")
    return found


def _in_service_dirs(path, writable: Sequence[str]) -> bool:
    """Whether `path` is in a directory lograven.service may write (`writable`: SERVICE_WRITABLE, and the
    unit's ReadWritePaths= as systemd has it, a drop-in that allows another directory as check advises)."""
    real = os.path.realpath(path)
    return any(real == d or real.startswith(d.rstrip(os.sep) + os.sep) for d in writable)


def _unit_rw_paths() -> tuple[str, ...]:
    """ReadWritePaths= of lograven.service as systemd has loaded it (`systemctl show`); none without systemd."""
    import shutil
    import subprocess

    if shutil.which("systemctl") is None:
        return ()
    try:
        out = subprocess.run(["systemctl", "show", "--property=ReadWritePaths", "--value", "lograven.service"],
                             capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return ()
    return tuple(os.path.realpath(p.lstrip("-+")) for p in out.split() if p.lstrip("-+").startswith("/"))


def _model_entries(cfg) -> list[tuple[str, bool]]:
    """The directories and files of the model `run` would load, parents first, each with whether it
    is a directory (empty when there is no model, or it cannot be resolved: root's check says so)."""
    from lograven.modelstore import resolve_model_path

    try:
        root = resolve_model_path(cfg.model or cfg.models_dir())
    except (LogravenError, OSError):
        return []
    out, dirs = [(str(root), True)], [str(root)]
    while dirs:
        d = dirs.pop(0)
        try:
            entries = sorted(os.scandir(d), key=lambda e: e.name)
        except OSError:
            continue
        for e in entries:
            is_dir = e.is_dir(follow_symlinks=False)
            out.append((e.path, is_dir))
            if is_dir:
                dirs.append(e.path)
    return out


def _unwritable(path: Path, directory: bool) -> str | None:
    """Why this user could not create or write `path` (a directory, or a file), or None."""
    p = path
    try:
        while not p.exists():
            if p.parent == p:
                break
            p = p.parent
        # no user can write there, root included (access() says yes to root anywhere, and no to a read-only
        # mount only with EROFS, which read as "not writable for this user"): `check` said OK to state_dir
        # /proc/nonexistent/x, which `run` refused (hostile-input review)
        real = os.path.realpath(p)
        # directories only: /dev/stdout resolves to /proc/self/fd/1 (a pipe, a usable alerts file)
        if p.is_dir() and (real in ("/proc", "/sys") or real.startswith(("/proc/", "/sys/"))):
            return "lies under /proc or /sys (the kernel's pseudo files), where no file can be created: not a file system for data"
        try:
            if os.statvfs(p).f_flag & os.ST_RDONLY:
                return f"{p} is on a read-only file system: not a file system for data"
        except OSError:
            pass
        if p == path and not path.is_dir():  # it exists, and is not a directory
            if directory:
                return "is a file, not a directory"
            return None if os.access(path, os.W_OK) else "not writable"
        if p == path and not directory:
            return "is a directory, not a file"
        if not p.is_dir():
            return f"{p} is not a directory"
    except PermissionError:
        return f"cannot be checked (permission denied on a directory above {p})"
    if not os.access(p, os.W_OK | os.X_OK):
        return f"{p} is not writable" if p != path else "not writable"
    return None


_STRUCTURAL = ("not a directory", "not a file", "not a file system for data")  # _unwritable's words for a path no user can write


def _output_paths(cfg) -> list[tuple[str, Path, str]]:
    """state_dir and the alerts file where this user could not write them: (key, path, why)."""
    out = []
    state = cfg.effective_state_dir()
    if (why := _unwritable(state, directory=True)) is not None:
        out.append(("state_dir", state, why))
    alerts = Path(cfg.alerts.jsonl.path)
    if cfg.alerts.jsonl.enabled and (why := _unwritable(alerts, directory=False)) is not None:
        out.append(("alerts.jsonl.path", alerts, why))
    return out


def _output_warnings(cfg, plugin: bool = False, paths: list[tuple[str, Path, str]] | None = None) -> list[str]:
    """What `run` would refuse or fail to write, said by `check` (as this user; under systemd,
    StateDirectory= provides the state directory). `paths`: _output_paths(cfg), when computed already."""
    out = []
    for what, path, why in _output_paths(cfg) if paths is None else paths:
        if what == "state_dir":
            out.append(f"state_dir {path}: {why} for {whoami()}; `run` needs to write there")
        else:
            hint = ("the plugin as this user would refuse to start" if plugin else "`run` as this user would refuse to "
                    "start (check as the service's user: `sudo -u lograven lograven check --config FILE`)")
            out.append(f"alerts.jsonl.path {path}: {why} for {whoami()}; {hint}")
    try:
        sock_mode = os.stat(cfg.alerts.syslog.socket).st_mode if cfg.alerts.syslog.enabled else None
    except OSError:
        sock_mode = None  # not there (yet): `run` retries
    if sock_mode is not None and not stat.S_ISSOCK(sock_mode):
        sock = cfg.alerts.syslog.socket
        out.append(f"alerts.syslog.socket {sock}: is not a socket; alerts would not reach syslog (is the syslog "
                   "daemon running and listening there? journald's is /dev/log or /run/systemd/journal/syslog)")
    from lograven.metrics import exposure_warning

    if cfg.metrics.enabled and not plugin and (warning := exposure_warning(cfg.metrics.listen)):
        out.append(warning)  # a plugin serves no metrics
    return out


def _warn_line_budget(corpus, files: Sequence[str], max_lines: int | None) -> None:
    """Say when --max-lines (learn.max_lines) stopped the reading before the last file: the files after
    it were not read at all, which the summary's file count alone does not show."""
    if not max_lines or len(corpus) < max_lines or not corpus.files:
        return
    last = corpus.files[-1]  # the file being read when the limit came: its last naming, if named twice
    unread = list(files[len(files) - list(reversed(files)).index(last):]) if last in files else []
    if unread:
        shown = ", ".join(unread[:3]) + (f" and {len(unread) - 3} more" if len(unread) > 3 else "")
        log.warning("the line limit (%d, --max-lines or learn.max_lines) was reached in %s: %s not read; "
                    "raise --max-lines to learn from them, or give the files to learn first", max_lines, last, shown)


def cmd_learn(args) -> int:
    from lograven.learning import corpus_from_alerts, learn
    from lograven.progress import ProgressBar
    from lograven.training import read_corpus

    # the daemon's alerts are read back with its sources' formats and the lines around them: its config
    cfg = _daemon_config(args, defaulted=bool(args.from_alerts))
    recorded = {} if args.from_alerts else _model_read_as(args.model)  # alerts: read as their sources are
    fmt, stream = _fmt(args, cfg, recorded), _stream_spec(args, cfg, recorded)
    if not args.from_alerts:
        _warn_read_otherwise(fmt, stream, recorded, "learn")
    if bool(args.from_alerts) == bool(args.logfiles):
        raise LogravenError("give either --from-alerts ALERTS.jsonl or LOGFILE... (new normal data), not both or neither")
    if args.alert and not args.from_alerts:
        raise LogravenError("--alert ID picks alerts of --from-alerts ALERTS.jsonl; give --from-alerts, or drop "
                            "--alert to learn the whole LOGFILE...")
    if args.all_alerts and (args.alert or not args.from_alerts):
        raise LogravenError("--all-alerts learns every alert of --from-alerts ALERTS.jsonl; it goes without --alert")
    if args.from_alerts and not args.alert and not args.all_alerts:
        # an audit learned a day's alerts file whole: six of seven real attacks in it became normal
        raise LogravenError(f"--from-alerts {args.from_alerts} without --alert would learn every alert in it as normal, "
                            "real anomalies included: name the false alarms with --alert ID (repeatable; "
                            "docs/operations.md shows how to list ids), or give --all-alerts for a file you reviewed "
                            "(e.g. filtered with jq)")
    _check_learn_target(args)
    if args.from_alerts:
        explicit = bool(args.fmt or getattr(args, "stream_key", None) or getattr(args, "stream", None))
        # without --format/--stream, each alert is parsed as its source in the config parsed it
        sources = [] if explicit else [(src.paths, src.format, src.stream) for src in cfg.sources]
        corpus = corpus_from_alerts(args.from_alerts, fmt=fmt, stream=stream, ids=set(args.alert) or None,
                                    max_line_bytes=cfg.runtime.max_line_bytes, sources=sources,
                                    context_from=[p for src in cfg.sources for p in src.paths])
        source = f"alerts {args.from_alerts}" + (f" ({', '.join(args.alert)})" if args.alert else "")
    else:
        corpus = read_corpus(args.logfiles, fmt=fmt, stream=stream, max_lines=args.max_lines or cfg.learn.max_lines,
                             max_line_bytes=cfg.runtime.max_line_bytes)
        _warn_line_budget(corpus, args.logfiles, args.max_lines or cfg.learn.max_lines)
        corpus.vouch_all = True  # the operator gives these logs as normal
        source = ", ".join(args.logfiles)
        _warn_unparsed(corpus, fmt)
    bar = ProgressBar(enabled=not args.quiet)
    # lines read with an explicit --format / --stream: the new version records those, else the parent's stay
    read_as = {k: v for k, v, given in (("format", fmt, args.fmt), ("stream", stream, getattr(args, "stream_key", None)
                                                                    or getattr(args, "stream", None))) if given}
    # keep_newer_current: another learn (or the daemon's relearning) that made its version current meanwhile
    # is not replaced in silence by this one, which does not hold what that one learned
    path, s = learn(args.model, corpus, out=args.out, training=cfg.training, progress=bar, source=source,
                    read_as=read_as, keep_newer_current=True)
    bar.close()
    if args.json:
        print(json.dumps(s, indent=2))
        return 0
    made = s.get("made_current")
    print(f"new model version written to {path} (from {s['parent']})" + ("; it is now current: a running daemon switches "
          "within seconds" if made else ""))
    limit = args.max_lines or cfg.learn.max_lines
    print(f"  learned   {s['learned_lines']} lines from {source}" + (f" (the first {limit}: --max-lines / learn.max_lines)"
          if not args.from_alerts and s['learned_lines'] >= limit else ""))
    print(f"  new types {len(s['new_types'])}; existing ids unchanged" + (":" if s["new_types"] else ""))
    for t in s.get("new_type_templates", [])[:20]:  # what now counts as normal: review it, roll back if too broad
        print(f"    #{t['id']:<5} {_printable(t['template'][:150])}")
    if len(s["new_types"]) > 20:
        print(f"    ... {len(s['new_types']) - 20} more: lograven types {path}")
    parent_thr = s.get("parent_autoencoder_threshold")
    was = f" (parent {parent_thr:.3f})" if isinstance(parent_thr, (int, float)) and parent_thr != s["autoencoder_threshold"] else ""
    print(f"  autoencoder threshold {s['autoencoder_threshold']:.3f}{was}; {s['seconds']:.1f} s")
    for t in s.get("raised_type_thresholds", [])[:20]:  # the learned lines still score high: only their type may
        print(f"    type #{t['id']} has its own threshold {t['threshold']:.3f} (its learned lines score above the "
              f"threshold): {_printable(t['template'][:120])}")
    if made and s.get("parent_version"):
        print(f"  {'their messages are known types now; ' if s['new_types'] else ''}to undo: "
              f"lograven models rollback --dir {Path(path).parent} --to {s['parent_version']}")
    elif made is False and not args.out:  # another version became current while this one was learned
        print(f"  not made current: another version became current while learning (another `lograven learn`, or the "
              f"daemon's relearning), and {Path(path).name} does not hold what that one learned. Run this `learn` "
              f"again to add these lines to it, or `lograven models rollback --dir {Path(path).parent} --to "
              f"{Path(path).name}` to use this one instead")
    elif not made:  # a single bundle written to --out: nothing serves it until the daemon is pointed at it
        print(f"  to use it: set `model: {path}` in the daemon's config and reload it (systemctl reload lograven)")
    return 0


def _check_learn_target(args) -> None:
    """Where `learn` will write (--out, or the model directory's next version): writable, before the work."""
    from lograven.bundle import check_bundle_target

    if args.out:
        check_bundle_target(args.out, "--out")
        return
    try:
        is_store = (Path(args.model) / "current").is_symlink()
    except OSError:
        return  # `learn` says what is wrong with --model
    if is_store:
        # where new_version_path() saves (a review: a version left without a bundle had been probed, and refused)
        from lograven.bundle import check_room_for_a_version

        check_room_for_a_version(args.model, "--model")


def cmd_allow(args) -> int:
    from lograven.allowlist import Allowlist, find_alert, new_rule, rule_from_alert
    from lograven.config import parse_duration

    cfg = _daemon_config(args, defaulted=args.allowlist is None or bool(args.alert_id and args.alerts is None))
    al = Allowlist(Path(args.allowlist) if args.allowlist else cfg.allowlist_path(), load=False)
    al.reload(strict=True)  # a file that cannot be read is the command's error, said once
    if args.list:
        if not al.rules:
            print(f"{al.path}: no rules")
        for r in al.rules:
            print(_printable(r.describe()))  # the file is the daemon user's to write: no terminal escapes
            if getattr(r, "too_broad", False):
                what = ("unknown message" if r.type_id == -1 else f"{r.detector} alert" if r.detector else "alert")
                print(f"  warning: allows every {what} "
                      f"in every file, real anomalies included; remove it (lograven allow --remove {r.id}) unless "
                      "that is meant")
        return 0
    if args.remove:
        al.remove(args.remove)
        print(f"removed {args.remove} from {al.path}")
        return 0
    expires = None
    if args.expires:
        try:
            expires = parse_duration(args.expires)
        except ValueError as e:
            raise LogravenError(f"--expires {args.expires!r}: {e} (e.g. 30m, 12h, 7d)") from None
        if expires <= 0:  # a rule that is over before it starts; leave --expires out for one that never ends
            raise LogravenError(f"--expires {args.expires!r}: must be longer than 0 (e.g. 30m, 12h, 7d); "
                                "leave it out for a rule that never expires")
    if args.alert_id:
        given = [o for o, v in (("--type", args.type), ("--transition", args.transition), ("--file", args.file),
                                ("--detector", args.detector)) if v is not None]  # fmt: skip
        if given:  # they would be ignored: the rule is the alert's own pattern
            raise LogravenError(f"give ALERT_ID or {', '.join(given)}, not both: ALERT_ID allows that alert's pattern "
                                "(its type, detector, file and transition); --any-file widens it to every file")
        alert = find_alert(Path(args.alerts or cfg.alerts.jsonl.path), args.alert_id)
        rule = rule_from_alert(alert, any_file=args.any_file, expires_in=expires, comment=args.comment)
        path, current = _current_templates(cfg) if rule.template or rule.from_template else (None, {})
        for tid, then in ((rule.type_id, rule.template), (rule.from_type, rule.from_template)):
            if path is not None and then is not None and tid is not None and current.get(tid) != then:
                print(_printable(f"warning: alert {args.alert_id} came from model {alert.get('model_version') or '?'}, "
                                 f"whose type {tid} is {then[:100]!r}; in the model now ({path}) type {tid} is "
                                 f"{(current.get(tid) or 'not there')[:100]!r} (it was trained again): the rule "
                                 "applies only where the type is that message, which is nowhere now"), file=sys.stderr)
    else:
        match: dict = {"file": args.file, "detector": args.detector, "type_id": args.type}
        if args.transition:
            try:
                a, b = (int(x) for x in args.transition.split(","))
            except ValueError:
                raise LogravenError(f"--transition {args.transition!r}: give two type ids, FROM,TO (see `lograven types`)") from None
            match.update(from_type=a, type_id=b)
        if all(v is None for v in match.values()):
            raise LogravenError("say what to allow: ALERT_ID, --type, --transition, --file or --detector (see --help)")
        if new_rule(**match).too_broad:  # the rule's own test, which `allow --list` warns by
            unknown = match.get("type_id") == -1  # --type -1, or --transition N,-1 (unknown lines after type N)
            everywhere = "in every file" if args.file is None else f"in every file (--file {args.file!r} matches every path)"
            if not unknown and args.detector is None:  # `--file '*'` alone
                raise LogravenError(f"this rule would allow every alert {everywhere}: lograven would alert on nothing. "
                                    "Name the log (--file /var/log/app/*.log), or stop the service (systemctl stop lograven)")
            # an audit's `allow --type -1` silenced an EXT4 error, an OOM kill and a root shell with the false alarm
            what = "every unknown message" if unknown else f"every {args.detector} alert"
            off = ("detectors.sequence.stream_end_after: 0" if args.detector == "stream_end"
                   else "detectors.<name>.enabled: false")  # fmt: skip
            raise LogravenError(f"this rule would allow {what} {everywhere}, real anomalies included: allow one "
                                "unknown message by its alert (ALERT_ID, its masked pattern), add --file GLOB for a "
                                f"log whose such lines are all expected, or turn a detector off in the config ({off})")
        templates = _check_type_ids(cfg, [t for t in (match["type_id"], match.get("from_type")) if t not in (None, -1)])
        # the rule keeps the types' templates: after a retrain the ids are other messages (see Rule.renumbered)
        match.update(template=templates.get(match["type_id"]), from_template=templates.get(match.get("from_type")))
        rule = new_rule(expires_in=expires, comment=args.comment, **match)
    al.add(rule)
    print(_printable(f"added to {al.path}: {rule.describe()}"))
    return 0


def _current_templates(cfg) -> tuple[Path | None, dict[int, str]]:
    """The daemon's model (its current version) and its types' templates; (None, {}) without one."""
    from lograven.bundle import load_types
    from lograven.modelstore import ModelStore, resolve_model_path

    try:
        path = resolve_model_path(cfg.model) if cfg.model else ModelStore(cfg.models_dir()).current_path()
        if path is None:
            return None, {}
        return path, {t.id: t.template for t in load_types(path).types_}
    except (OSError, LogravenError):
        return None, {}


def _check_type_ids(cfg, ids: list[int]) -> dict[int, str]:
    """Refuse a rule naming a type the daemon's model does not have (a typo would allow nothing, silently);
    the templates of the types named. Without a model to look at (learn mode before its first model),
    nothing can be checked: {}."""
    if not ids:
        return {}
    path, known = _current_templates(cfg)
    if path is None:
        return {}
    bad = [t for t in ids if t not in known]
    if bad:
        raise LogravenError(
            f"type {', '.join(map(str, bad))} is not in the model {path} (its types are 1 to {max(known, default=0)}, "
            f"-1 for unknown messages); `lograven types {path}` lists them"
        )
    return {t: known[t] for t in ids}


def cmd_run(args) -> int:
    from lograven.service import run_service

    return run_service(args.config, stdin_mode=args.stdin)


def cmd_models(args) -> int:
    from lograven.modelstore import ModelStore, describe, dump, running_version

    if args.keep is not None and args.action != "prune":
        raise LogravenError(f"--keep is for `lograven models prune`, not `{args.action}`")
    if args.to is not None and args.action != "rollback":
        raise LogravenError(f"--to is for `lograven models rollback`, not `{args.action}`")
    cfg = _daemon_config(args, defaulted=not args.dir)  # --config, or the installed one when --dir is not given
    store = ModelStore(Path(args.dir) if args.dir else cfg.models_dir())
    if not store.root.is_dir():
        raise LogravenError(
            f"{store.root}: no such directory: a typo in --dir (it is <state_dir>/models; --config finds it), "
            "or no model versions yet (the daemon creates the first in learn mode)"
        )
    if args.action == "list":
        infos = store.list()
        if args.json:
            print(dump(infos))
        elif not infos:
            print(f"{store.root}: no model versions yet (the daemon creates them in learn mode; `lograven learn` adds them)")
        else:
            for i in infos:
                print(_printable(describe(i)))  # manifests are the daemon user's files too
        try:
            cur = store.current_name()
        except LogravenError as e:  # `current` points outside the directory: no version here is current
            if not args.json:
                print(_printable(f"warning: {e}"), file=sys.stderr)
            return 0
        if not args.json and cur is not None and not any(i.current for i in infos):
            print(_printable(f"warning: current points to {cur}, which is not a version here: make one current with "
                             f"`lograven models rollback --dir {store.root} --to vNNNN`"), file=sys.stderr)  # fmt: skip
        return 0
    if args.action == "prune":
        keep = args.keep if args.keep is not None else cfg.learn.keep_versions
        if keep < 1:
            raise LogravenError(f"--keep {keep}: keep at least 1 version (the current one is never deleted)")
        # never the version a daemon runs, which may not be `current` (a damaged one it refused: a review saw
        # prune delete the last working model)
        running = running_version(store, cfg.effective_state_dir())
        removed = store.prune(keep, protect=(running,) if running else ())
        cur = store.current_name()
        kept = f"keeping the newest {keep}" + (f" and current ({cur})" if cur and cur not in store.versions()[-keep:] else "")
        print(f"{store.root}: deleted {', '.join(removed)}; {kept}" if removed
              else f"{store.root}: nothing to delete ({len(store.versions())} versions, {kept})")
        return 0
    name = store.rollback(args.to)
    print(f"{store.root}: current -> {name}; a running daemon switches within seconds (or send SIGHUP)")
    return 0


def cmd_demo(args) -> int:
    from lograven.demo import run_demo

    s = run_demo(duration=args.duration, rate=args.rate, every=args.every, model=args.model, seed=args.seed, keep=args.keep)
    if args.json:
        print(json.dumps(s))
    return 0


COMMANDS = {"allow": cmd_allow, "learn": cmd_learn, "demo": cmd_demo, "train": cmd_train, "types": cmd_types, "score": cmd_score, "check": cmd_check, "run": cmd_run, "models": cmd_models}


# Commands that only serve models: numpy's BLAS must not spread tiny matmuls over threads (measured:
# 2-3x slower and several cores busy on this 2-core machine). Training commands keep the defaults.
SERVING_COMMANDS = {"score", "demo", "types", "run", "check"}


def limit_threads(n: int) -> None:
    """Limit BLAS/OpenMP thread pools (threadpoolctl, a scikit-learn dependency)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - always there with scikit-learn
        return
    threadpool_limits(limits=n)


MIN_TRAINING_LINES = 300  # `train` warns below this
DAEMON_COMMANDS = frozenset({"run"})  # log at INFO by default (-q: warnings only)


class JournalFormatter(logging.Formatter):
    """For stderr connected to the journal (systemd's JOURNAL_STREAM): every line starts with its syslog
    priority (`<3>` error, `<4>` warning, `<6>` info, `<7>` debug), which journald takes as the entry's
    priority, so `journalctl -u lograven -p warning` and rsyslog's severity filters see lograven's
    warnings and errors; the journal stamps the time itself."""

    def format(self, record: logging.LogRecord) -> str:
        n = record.levelno
        prio = 2 if n >= logging.CRITICAL else 3 if n >= logging.ERROR else 4 if n >= logging.WARNING else 6 if n >= logging.INFO else 7
        return "\n".join(f"<{prio}>{line}" for line in super().format(record).split("\n"))


def _terminate_as_exit():
    """Make SIGTERM raise SystemExit(143) in the main thread (cleanups run; osutil.terminate_as_exit);
    the previous handler, or None where no handler can be set (not the main thread)."""
    from lograven.osutil import terminate_as_exit

    try:
        return signal.signal(signal.SIGTERM, terminate_as_exit)
    except ValueError:  # not the main thread
        return None


class StdoutWriteError(LogravenError):
    """Standard output could not be written (a full disk behind `> FILE`, an I/O error)."""


class _GuardedStdout:
    """sys.stdout for a command: a failed write or flush (other than a closed pipe, which `main` takes
    as the reader having gone) becomes a StdoutWriteError that says what to do, not a traceback."""

    def __init__(self, stream) -> None:
        self._stream = stream

    def _call(self, method: str, *args):
        try:
            return getattr(self._stream, method)(*args)
        except BrokenPipeError:
            raise
        except OSError as e:
            raise StdoutWriteError(f"cannot write to standard output: {e.strerror or e}; free space where it goes, "
                                   "or redirect it elsewhere (> FILE)") from None

    def write(self, text: str) -> int:
        return self._call("write", text)

    def flush(self) -> None:
        self._call("flush")

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


def _drop_stdout() -> None:
    """After a failed write: what is still buffered goes to /dev/null at exit, not into a second error."""
    try:
        fd = os.open(os.devnull, os.O_WRONLY)
        os.dup2(fd, sys.__stdout__.fileno() if sys.__stdout__ is not None else 1)
        os.close(fd)
    except (OSError, ValueError):
        pass


def setup_logging(level: int) -> None:
    """Log to stderr: with each line's syslog priority when that is the journal (JournalFormatter); else
    with a timestamp. Also in the learn-mode child (childproc), whose stderr is the daemon's."""
    log_handler = logging.StreamHandler(sys.stderr)
    if _stderr_is_journal():
        log_handler.setFormatter(JournalFormatter("%(levelname)s %(name)s: %(message)s"))
    else:
        log_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[log_handler])


def _stderr_is_journal() -> bool:
    """Whether stderr is the stream systemd connected to the journal (JOURNAL_STREAM is `device:inode`)."""
    want = os.environ.get("JOURNAL_STREAM", "")
    try:
        st = os.fstat(sys.stderr.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return bool(want) and want == f"{st.st_dev}:{st.st_ino}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING if args.quiet else (logging.INFO if args.verbose <= 1 else logging.DEBUG)
    if args.verbose == 0 and not args.quiet and args.command not in DAEMON_COMMANDS:
        # commands print their results; the daemon has none, so it says what it does (start, model,
        # reloads, rotations, a sink that recovered) in the journal unless -q
        level = logging.WARNING
    setup_logging(level)
    if not args.command:
        parser.print_help()
        return 2
    handler = COMMANDS.get(args.command) or getattr(args, "handler", None)
    if args.command in SERVING_COMMANDS:
        # before numpy is imported: OpenBLAS sizes its thread pool when it loads
        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ.setdefault(var, "1")
    guarded = args.command not in DAEMON_COMMANDS  # the daemon's stdout sink says itself what fails
    if guarded and sys.stdout is None:  # started with standard output closed (`>&-`): print() writes nothing
        print(f"lograven {args.command}: error: standard output is closed; redirect it (> FILE, or > /dev/null)",
              file=sys.stderr)
        return 1
    real_stdout = sys.stdout
    previous_term = None
    if guarded:
        sys.stdout = _GuardedStdout(real_stdout)
        # SIGTERM (systemd, a timeout, kill) ends a command as an exception: a bundle being written is
        # removed, as on Ctrl-C, instead of a hidden half-written `.NAME.tmp-*` left beside --out
        previous_term = _terminate_as_exit()
    try:
        return int(handler(args) or 0)
    except LogravenError as e:
        if isinstance(e, StdoutWriteError) and real_stdout is sys.__stdout__:
            _drop_stdout()  # the process's own fd 1 only (not a caller's redirect_stdout or capture)
        print(f"{'<3>' if _stderr_is_journal() else ''}lograven {args.command}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `lograven score ... | head`: the reader went away; not an error
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return 0
    except Exception:  # after BrokenPipeError, an Exception too
        if not _stderr_is_journal():
            raise
        # the traceback as lines of the journal at "critical" (printed by Python, it came in as "info")
        logging.getLogger("lograven").critical("uncaught error, stopping", exc_info=True)
        return 1
    except SystemExit as e:
        if e.code == 128 + signal.SIGTERM:
            print(f"{'<4>' if _stderr_is_journal() else ''}lograven {args.command}: stopped by SIGTERM", file=sys.stderr)
        raise
    finally:
        if guarded and isinstance(sys.stdout, _GuardedStdout):
            sys.stdout = real_stdout
        if previous_term is not None:
            signal.signal(signal.SIGTERM, previous_term)
