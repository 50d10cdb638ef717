"""Message-type classification against Drain3 template matching, on the same messages.

Drain3 (logpai/Drain3) is configured with the IP, HEX and NUM masking
instructions of its example drain3.ini (as DESIGN.md's 66k lines/s figure),
default similarity 0.4 and depth 4. It learns templates from the training
messages with `add_log_message`; then on the test messages we time
`match()` (classification against the learned templates, the daemon's job)
and `add_log_message()` (streaming learn-and-classify). lograven's
`MessageTypes.classify` is timed on the same messages: with the default
bundle's types for generated data, and with types fitted on the file itself
for the Loghub 2k files. Both see the message only (header parsed off), both
in one pinned worker process, in alternating passes.

Drain3 is not a lograven dependency: install it for the benchmark with
`.venv/bin/pip install drain3`; without it this benchmark is skipped.
"""
from __future__ import annotations

from bench.common import HDFS_FORMAT, Context, Skip, have_package, row, run_worker

TITLE = "Message types: lograven classify vs Drain3 (one pinned core)"
INSTALL = "Drain3 is not installed; install it for the benchmark only: .venv/bin/pip install drain3"

# From Drain3's example drain3.ini; the IP, HEX and NUM instructions.
DRAIN_MASKING = [
    (r"((?<=[^A-Za-z0-9])|^)(\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3})((?=[^A-Za-z0-9])|$)", "IP"),
    (r"((?<=[^A-Za-z0-9])|^)(0x[a-f0-9A-F]+)((?=[^A-Za-z0-9])|$)", "HEX"),
    (r"((?<=[^A-Za-z0-9])|^)([\-\+]?\d+)((?=[^A-Za-z0-9])|$)", "NUM"),
]


# ------------------------------------------------------------------ worker side
def compare(train_file: str, test_file: str, fmt: str, max_lines: int, seconds: float, types_from: str) -> dict:
    """Time Drain3 match/add_log_message and lograven classify on the messages of test_file."""
    import logging
    import time

    from drain3 import TemplateMiner
    from drain3.masking import MaskingInstruction
    from drain3.template_miner_config import TemplateMinerConfig

    from lograven.msgtypes import UNKNOWN, MessageTypes
    from lograven.parsing import Parser, decode_line

    logging.getLogger("drain3").setLevel(logging.WARNING)
    parser = Parser(fmt)

    def messages(path: str) -> list[str]:
        out = []
        with open(path, "rb") as f:
            for raw in f:
                out.append(parser.parse(decode_line(raw)[0]).message)
                if len(out) >= max_lines:
                    break
        return out

    train, test = messages(train_file), messages(test_file)
    cfg = TemplateMinerConfig()
    cfg.masking_instructions = [MaskingInstruction(p, name) for p, name in DRAIN_MASKING]
    cfg.profiling_enabled = False
    miner = TemplateMiner(persistence_handler=None, config=cfg)
    t0 = time.perf_counter()
    for m in train:
        miner.add_log_message(m)
    drain_train_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    if types_from == "fit":
        types = MessageTypes().fit(train)
    else:
        from lograven.bundle import load_bundle

        types = load_bundle(types_from).types
    lograven_fit_s = time.perf_counter() - t0

    classify, match, add = types.classify, miner.match, miner.add_log_message
    # first pass of lograven on cold per-token caches (the daemon's first minutes)
    types._masker._cache.clear()
    t0 = time.perf_counter()
    unknown = sum(classify(m) == UNKNOWN for m in test)
    cold = len(test) / (time.perf_counter() - t0)
    unmatched = sum(match(m) is None for m in test)

    def timed(fn) -> dict:
        n, w0, c0 = 0, time.perf_counter(), time.process_time()
        while True:
            for m in test:
                fn(m)
            n += len(test)
            if time.perf_counter() - w0 >= seconds:
                break
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
        return {"lines": n, "per_s_wall": n / wall, "per_s_cpu": n / cpu}

    res = {"lograven_classify": timed(classify), "drain_match": timed(match), "drain_add": timed(add)}
    res["lograven_classify_2"] = timed(classify)  # again, after Drain3: order effects show up as a difference
    lg = max(res["lograven_classify"]["per_s_cpu"], res["lograven_classify_2"]["per_s_cpu"])
    return {
        **res, "lograven_cold_first_pass_per_s": cold, "train_lines": len(train), "test_lines": len(test),
        "lograven_types": len(types.types_), "drain_clusters": len(miner.drain.clusters),
        "lograven_unknown_fraction": unknown / len(test), "drain_match_none_fraction": unmatched / len(test),
        "drain_train_s": drain_train_s, "lograven_fit_s": lograven_fit_s if types_from == "fit" else None,
        "ratio_match_cpu": lg / res["drain_match"]["per_s_cpu"], "ratio_add_cpu": lg / res["drain_add"]["per_s_cpu"],
    }  # fmt: skip


# ------------------------------------------------------------------ driver side
def run(ctx: Context) -> dict:
    if not have_package("drain3"):
        raise Skip(INSTALL)
    seconds = ctx.seconds(5.0, 0.5)
    sets = [("generated", ctx.generated(ctx.lines(100_000, 5_000), seed=1), ctx.generated(ctx.lines(50_000, 5_000), seed=7),
             "syslog", str(ctx.default_model()))]  # fmt: skip
    for rel, fmt in (("loghub/Linux/Linux_2k.log", "syslog"), ("loghub/OpenSSH/OpenSSH_2k.log", "syslog"),
                     ("loghub/HDFS/HDFS_2k.log", HDFS_FORMAT)):  # fmt: skip
        p = ctx.shared_file(rel)
        if p is not None and (not ctx.smoke or rel.startswith("loghub/Linux")):
            sets.append((p.stem, p, p, fmt, "fit"))
    rows, details = [], {}
    for name, train, test, fmt, types_from in sets:
        r = run_worker("drain", "compare", {"train_file": str(train), "test_file": str(test), "fmt": fmt,
                                            "max_lines": 200_000, "seconds": seconds, "types_from": types_from})  # fmt: skip
        details[name] = r
        lg = max(r["lograven_classify"]["per_s_wall"], r["lograven_classify_2"]["per_s_wall"])
        what = (f"{r['test_lines']:,} test lines; types from models/default" if types_from != "fit"
                else f"{r['test_lines']:,} lines, types fitted on the same file")  # fmt: skip
        rows.append(row(f"{name}: lograven `MessageTypes.classify`", lg, "lines/s",
                        note=f"{what}; {r['lograven_types']} types, {r['lograven_unknown_fraction']:.1%} UNKNOWN; "
                             f"first pass on cold caches {r['lograven_cold_first_pass_per_s']:,.0f}/s", noisy=True))  # fmt: skip
        rows.append(row(f"{name}: Drain3 `match()`", r["drain_match"]["per_s_wall"], "lines/s",
                        note=f"{r['drain_clusters']} clusters, {r['drain_match_none_fraction']:.1%} unmatched", noisy=True))
        rows.append(row(f"{name}: Drain3 `add_log_message()`", r["drain_add"]["per_s_wall"], "lines/s", noisy=True))
        rows.append(row(f"{name}: ratio classify / match", r["ratio_match_cpu"], "×", note="per CPU-second"))
        rows.append(row(f"{name}: ratio classify / add_log_message", r["ratio_add_cpu"], "×", note="per CPU-second"))
    return {"title": TITLE, "rows": rows, "details": details}
