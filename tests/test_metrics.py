"""Metrics: names and labels, the HTTP endpoint, and the Prometheus rules that use them."""
from __future__ import annotations

import platform
import re
import shutil
import socket
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from lograven import __version__
from lograven.errors import LogravenError
from lograven.metrics import DEFAULT_LISTEN, Metrics, parse_listen, start_http_server

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "systemd" / "lograven-alerts.rules.yml"
DOCS = ROOT / "docs" / "metrics.md"
ALLOWED_LABELS = {"file", "detector", "sink", "reason"}


def value(m: Metrics, name: str, **labels: str) -> float | None:
    return m.registry.get_sample_value(name, labels)


def test_counters_are_exposed_with_total_suffix() -> None:
    m = Metrics()
    f = "/var/log/messages"
    m.lines_read.labels(file=f).inc(3)
    m.bytes_read.labels(file=f).inc(300)
    m.lines_dropped.labels(file=f, reason="own_alert").inc()
    m.anomalies.labels(file=f, detector="sequence").inc(2)
    m.alerts_emitted.labels(sink="jsonl").inc()
    m.alerts_suppressed.labels(reason="dedup").inc()
    m.inference_duration.labels(detector="autoencoder").observe(0.0004)
    m.sequence_probability.observe(0.01)
    m.autoencoder_error_ratio.observe(1.3)
    text = m.exposition().decode()
    for line in (
        'lograven_lines_read_total{file="/var/log/messages"} 3.0',
        'lograven_read_bytes_total{file="/var/log/messages"} 300.0',
        'lograven_lines_dropped_total{file="/var/log/messages",reason="own_alert"} 1.0',
        'lograven_anomalies_total{detector="sequence",file="/var/log/messages"} 2.0',
        'lograven_alerts_emitted_total{sink="jsonl"} 1.0',
        'lograven_alerts_suppressed_total{reason="dedup"} 1.0',
        'lograven_inference_duration_seconds_bucket{detector="autoencoder",le="0.0005"} 1.0',
        'lograven_sequence_probability_bucket{le="0.02"} 1.0',
        'lograven_autoencoder_error_ratio_bucket{le="1.25"} 0.0',
        'lograven_autoencoder_error_ratio_bucket{le="1.5"} 1.0',
    ):
        assert line in text, line
    assert "lograven_lines_read_total_total" not in text
    assert "_created" not in text  # a series per counter and file that nothing uses (11 of 26 per file)


def test_info_metrics_and_reload_state() -> None:
    m = Metrics()
    assert value(m, "lograven_build_info", version=__version__, python=platform.python_version()) == 1
    assert value(m, "lograven_model_info", version="none", sha256="") == 1
    m.set_model("2026-11-01-7f3a", "ab" * 32)
    assert value(m, "lograven_model_info", version="2026-11-01-7f3a", sha256="ab" * 32) == 1
    assert value(m, "lograven_model_info", version="none", sha256="") is None  # replaced, not added
    assert value(m, "lograven_config_last_reload_successful") == 1
    m.reload_failed()
    assert value(m, "lograven_config_last_reload_successful") == 0
    assert value(m, "lograven_config_reload_failures_total") == 1
    m.reload_succeeded(now=1_800_000_000)
    assert value(m, "lograven_config_last_reload_successful") == 1
    assert value(m, "lograven_config_last_reload_success_timestamp_seconds") == 1_800_000_000


def test_file_position_sets_lag() -> None:
    m = Metrics()
    m.set_file_position("/var/log/syslog", offset=1000, size=5000)
    assert value(m, "lograven_file_lag_bytes", file="/var/log/syslog") == 4000
    m.set_file_position("/var/log/syslog", offset=10, size=0)  # truncated under us
    assert value(m, "lograven_file_lag_bytes", file="/var/log/syslog") == 0


def test_advance_to_total_follows_cumulative_counts() -> None:
    m = Metrics()
    f = "/var/log/messages"
    m.advance_to_total(m.lines_read, 10, file=f)
    m.advance_to_total(m.lines_read, 25, file=f)
    m.advance_to_total(m.lines_read, 25, file=f)
    assert value(m, "lograven_lines_read_total", file=f) == 25
    m.advance_to_total(m.lines_read, 4, file=f)  # the source restarted from zero
    assert value(m, "lograven_lines_read_total", file=f) == 29
    m.advance_to_total(m.lines_dropped, 3, file=f, reason="blank")
    m.advance_to_total(m.checkpoint_corrupt, 1)
    assert value(m, "lograven_lines_dropped_total", file=f, reason="blank") == 3
    assert value(m, "lograven_checkpoint_corrupt_total") == 1
    m.remove_file(f)  # a file tailed again later starts from a clean slate
    m.advance_to_total(m.lines_read, 2, file=f)
    assert value(m, "lograven_lines_read_total", file=f) == 2


def test_remove_file_drops_only_that_files_series() -> None:
    m = Metrics()
    for f in ("/a", "/b"):
        m.lines_read.labels(file=f).inc()
        m.lines_dropped.labels(file=f, reason="queue_full").inc()
        m.anomalies.labels(file=f, detector="autoencoder").inc()
        m.set_file_position(f, 1, 2)
        m.file_readable.labels(file=f).set(1)
    m.remove_file("/a")
    text = m.exposition().decode()
    assert 'file="/a"' not in text
    assert text.count('file="/b"') >= 7


def test_a_file_name_that_is_not_utf8_is_a_label_not_a_failed_scrape(caplog) -> None:
    """A followed file named with bytes that are not UTF-8 (`bad\\xffname.log`, which any user who can write
    into a globbed directory can make) is labelled with backslash escapes: as a raw surrogate escape it had
    failed the whole exposition's encoding, and /metrics answered 500 to every scrape, with no log line
    (a robustness review). A scrape that fails is now said in the log."""
    from types import SimpleNamespace

    from lograven.metrics import file_label
    from lograven.tailer import FileStats

    odd = b"/var/log/app/bad\xffname.log".decode("utf-8", "surrogateescape")
    assert file_label(odd) == "/var/log/app/bad\\xffname.log" and file_label("/var/log/ok.log") == "/var/log/ok.log"
    m = Metrics()
    m.export_file_stats(odd, FileStats(lines=3, offset=30, size=40))
    server = start_http_server("127.0.0.1:0", m)
    try:
        body = _scrape(server.url)
        assert 'lograven_lines_read_total{file="/var/log/app/bad\\\\xffname.log"} 3.0' in body, body
        assert 'lograven_file_lag_bytes{file="/var/log/app/bad\\\\xffname.log"} 10.0' in body
        m.remove_file(odd)
        assert "bad" not in _scrape(server.url)
        m.lines_read.labels(file=odd).inc()  # any call site's file label is escaped
        assert "bad\\\\xffname" in _scrape(server.url)
        m.anomalies.labels(file="/x", detector=odd).inc()  # another label left raw: the scrape fails
        with caplog.at_level("WARNING", logger="lograven.metrics"), pytest.raises(urllib.error.HTTPError):
            _scrape(server.url)
        assert "metrics: a scrape failed (HTTP 500): UnicodeEncodeError" in caplog.text
    finally:
        server.stop()


def test_several_instances_do_not_clash() -> None:
    a, b = Metrics(), Metrics()
    a.lines_read.labels(file="/x").inc()
    assert value(a, "lograven_lines_read_total", file="/x") == 1
    assert value(b, "lograven_lines_read_total", file="/x") is None


def test_labels_are_bounded_and_names_follow_conventions() -> None:
    m = Metrics()
    wrappers = [v for v in vars(m).values() if isinstance(v, MetricWrapperBase)]
    assert len(wrappers) >= 25
    for metric in wrappers:
        assert set(metric._labelnames) <= ALLOWED_LABELS, metric._name
        assert metric._name.startswith("lograven_")
        assert not metric._name.endswith("_total")
    for name in m.metric_names():
        if name.startswith("lograven_"):
            assert re.fullmatch(r"lograven_[a-z0-9_]+", name)


def test_process_metrics_are_included() -> None:
    assert "process_resident_memory_bytes" in Metrics().metric_names()
    assert "process_resident_memory_bytes" not in Metrics(process_metrics=False).metric_names()


# --------------------------------------------------------------------------- HTTP endpoint


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [
        ("127.0.0.1:9077", "127.0.0.1", 9077),
        ("[::1]:9077", "::1", 9077),
        ("0.0.0.0:0", "0.0.0.0", 0),
        ("localhost:19077", "localhost", 19077),
        ("9078", "127.0.0.1", 9078),
    ],
)
def test_parse_listen(text: str, host: str, port: int) -> None:
    addr = parse_listen(text)
    assert (addr.host, addr.port) == (host, port)


@pytest.mark.parametrize("text", ["localhost", "::1:9077", "[::1]9077", "[nothost]:1", "1.2.3.4:99999", ":9077", "h:x"])
def test_parse_listen_rejects_bad_values(text: str) -> None:
    with pytest.raises(LogravenError, match="metrics.listen"):
        parse_listen(text)


def test_default_listen_is_loopback_outside_exporter_range() -> None:
    addr = parse_listen(DEFAULT_LISTEN)
    assert addr.host == "127.0.0.1" and not 9100 <= addr.port <= 9999


def _scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as resp:
        assert resp.status == 200
        return resp.read().decode()


def test_http_server_serves_the_registry_on_loopback() -> None:
    m = Metrics()
    m.lines_read.labels(file="/var/log/messages").inc(7)
    server = start_http_server("127.0.0.1:0", m)
    try:
        assert server.host == "127.0.0.1" and server.port > 0
        body = _scrape(server.url)
        assert 'lograven_lines_read_total{file="/var/log/messages"} 7.0' in body
        assert "lograven_build_info{" in body
    finally:
        server.stop()
    with pytest.raises(urllib.error.URLError):
        _scrape(server.url)  # stopped: the port is closed


def test_idle_clients_neither_pile_up_threads_nor_delay_scrapes() -> None:
    """Local clients that open connections and never finish a request: with a thread per connection, 8
    slots and a 5 s cut-off, 24 of them made every scrape take 10 s (Prometheus's default scrape timeout;
    review of 2026-12-07 (night)). One thread now holds every connection, and a scrape is answered at once."""
    import threading

    from lograven import metrics as metrics_mod

    before = threading.active_count()
    server = start_http_server("127.0.0.1:0", Metrics())
    stalled = []
    try:
        for _ in range(3 * metrics_mod.MAX_CONNECTIONS):  # more than are held: the oldest are closed
            c = socket.create_connection((server.host, server.port))
            c.sendall(b"GET /metr")  # half a request, never finished
            stalled.append(c)
        for _ in range(3):
            with socket.create_connection((server.host, server.port), timeout=2.0) as c:  # far below the cut-off
                c.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
                answer = b""
                while chunk := c.recv(65536):
                    answer += chunk
            assert answer.startswith(b"HTTP/1.0 200 OK\r\n") and b"lograven_build_info" in answer
        assert threading.active_count() - before <= 1  # the server's one thread
    finally:
        for c in stalled:
            c.close()
        server.stop()


def test_trickling_clients_are_cut_at_the_request_deadline(monkeypatch) -> None:
    """A client sending a byte now and then kept its connection for ever when each read had its own
    timeout (an audit: 8 of them kept Prometheus out). The whole exchange has a deadline."""
    import time

    from lograven import metrics as metrics_mod

    monkeypatch.setattr(metrics_mod, "REQUEST_DEADLINE_SECONDS", 1.0)
    server = start_http_server("127.0.0.1:0", Metrics())
    clients = [socket.create_connection((server.host, server.port)) for _ in range(4)]
    try:
        t0 = time.monotonic()
        cut = set()
        while len(cut) < len(clients) and time.monotonic() - t0 < 10:
            for i, c in enumerate(clients):
                if i in cut:
                    continue
                try:
                    c.sendall(b"a")
                except OSError:
                    cut.add(i)
            time.sleep(0.2)
        assert len(cut) == len(clients)
        assert time.monotonic() - t0 < 5  # cut near the 1 s deadline, not kept
        assert "lograven_build_info" in _scrape(server.url)
    finally:
        for c in clients:
            c.close()
        server.stop()


def test_head_other_methods_and_bad_requests() -> None:
    """HEAD answers as GET without the body (health checks, `curl -I`: 405 before); OPTIONS, another
    method, a request that is not HTTP and an endless header are answered and closed."""
    server = start_http_server("127.0.0.1:0", Metrics())

    def ask(raw: bytes) -> bytes:
        with socket.create_connection((server.host, server.port), timeout=5) as c:
            c.sendall(raw)
            out = b""
            while chunk := c.recv(65536):
                out += chunk
            return out

    try:
        head = ask(b"HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        assert head.startswith(b"HTTP/1.0 200 OK\r\n") and head.endswith(b"\r\n\r\n"), head[:200]
        length = int(re.search(rb"Content-Length: (\d+)", head).group(1))
        get = ask(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        got = int(re.search(rb"Content-Length: (\d+)", get).group(1))
        assert len(get.split(b"\r\n\r\n", 1)[1]) == got
        # the same page as HEAD said, but for the process's own gauges, which move between the two scrapes
        # (CPU seconds, resident memory: a digit more or less failed the exact comparison once in CI)
        assert length > 1000 and abs(got - length) < 100
        assert b"Content-Type: text/plain" in head
        assert ask(b"OPTIONS /metrics HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.0 200 OK")
        assert ask(b"POST /metrics HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.0 405")
        assert ask(b"hello\r\n\r\n").startswith(b"HTTP/1.0 400")
        assert ask(b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 40000).startswith(b"HTTP/1.0 431")
        gz = ask(b"GET /metrics HTTP/1.1\r\nAccept-Encoding: gzip\r\n\r\n")  # prometheus_client's answer
        assert b"Content-Encoding: gzip" in gz.split(b"\r\n\r\n", 1)[0]
    finally:
        server.stop()


def test_http_server_ipv6_loopback() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 support in this Python")
    try:
        probe = socket.socket(socket.AF_INET6)
        probe.bind(("::1", 0))
        probe.close()
    except OSError:
        pytest.skip("::1 is not configured on this host")
    server = start_http_server("[::1]:0", Metrics())
    try:
        assert server.host == "::1"
        assert "lograven_build_info" in _scrape(server.url)
    finally:
        server.stop()


def test_port_in_use_names_the_key_and_suggests_another() -> None:
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    port = holder.getsockname()[1]
    try:
        with pytest.raises(LogravenError) as err:
            start_http_server(f"127.0.0.1:{port}", Metrics())
        msg = str(err.value)
        assert "metrics.listen" in msg and "already in use" in msg and f"127.0.0.1:{port + 1}" in msg
    finally:
        holder.close()


# --------------------------------------------------------------------------- rules and docs

PROMQL_NAME = re.compile(r"\b(lograven_[a-z0-9_]+|process_[a-z0-9_]+)\b")


def _rules() -> list[dict]:
    doc = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return [rule for group in doc["groups"] for rule in group["rules"]]


def test_rules_file_is_well_formed() -> None:
    doc = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    assert list(doc) == ["groups"]
    rules = _rules()
    names = {r["alert"] for r in rules}
    assert {
        "LogravenDown",
        "LogravenFallingBehind",
        "LogravenAlertDeliveryFailing",
        "LogravenReloadFailed",
        "LogravenAnomalyStorm",
    } <= names
    for rule in rules:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations", "keep_firing_for"}, rule["alert"]
        assert isinstance(rule["expr"], str) and rule["expr"].strip()
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
        if "for" in rule:
            assert re.fullmatch(r"\d+[smh]", rule["for"])
        assert rule["expr"].count("(") == rule["expr"].count(")")


def test_rules_only_use_metrics_that_exist() -> None:
    known = Metrics().metric_names()
    used: set[str] = set()
    for rule in _rules():
        found = set(PROMQL_NAME.findall(rule["expr"]))
        if rule["alert"] == "LogravenDown":
            assert 'up{job="lograven"}' in rule["expr"].replace(" ", "")
        else:
            assert found, f"{rule['alert']} uses no lograven metric"
        used |= found
    unknown = used - known
    assert not unknown, f"rules use metrics lograven does not export: {sorted(unknown)}"


def test_rules_pass_promtool_when_available() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed")
    result = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_metric_is_documented() -> None:
    docs = DOCS.read_text(encoding="utf-8")
    m = Metrics(process_metrics=False)
    for family in m.registry.collect():
        shown = family.name + "_total" if family.type == "counter" else family.name
        shown = shown + "_info" if family.type == "info" else shown
        assert f"`{shown}`" in docs, f"{shown} is missing from docs/metrics.md"


# Each case: an alert, the input series (promtool notation, 1 minute apart), when to evaluate,
# and whether the alert's expression must select anything then.
_I = 'job="lograven",instance="h:9077"'
RULE_CASES = [
    ("LogravenDown", {f"up{{{_I}}}": "0x10"}, "6m", True),
    ("LogravenDown", {f"up{{{_I}}}": "1x10"}, "6m", False),
    ("LogravenFallingBehind", {f'lograven_file_lag_bytes{{{_I},file="/m"}}': "20971520x20"}, "15m", True),
    ("LogravenFallingBehind", {f'lograven_file_lag_bytes{{{_I},file="/m"}}': "2097152+10000x20"}, "15m", True),
    ("LogravenFallingBehind", {f'lograven_file_lag_bytes{{{_I},file="/m"}}': "2097152x20"}, "15m", False),
    ("LogravenFallingBehind", {f'lograven_file_lag_bytes{{{_I},file="/m"}}': "5000+1000x20"}, "15m", False),
    (
        "LogravenAlertDeliveryFailing",
        {f'lograven_alerts_failed_total{{{_I},sink="jsonl"}}': "0+1x20",
         f'lograven_alerts_pending{{{_I},sink="jsonl"}}': "5x20"},
        "15m",
        True,
    ),
    (
        "LogravenAlertDeliveryFailing",  # failed, retried, recovered: nothing queued any more
        {f'lograven_alerts_failed_total{{{_I},sink="syslog"}}': "0+1x20",
         f'lograven_alerts_pending{{{_I},sink="syslog"}}': "0x20"},
        "15m",
        False,
    ),
    ("LogravenAlertsDropped", {f'lograven_alerts_dropped_total{{{_I},sink="jsonl"}}': "0 0 0 100 100"}, "4m", True),
    ("LogravenReloadFailed", {f"lograven_config_last_reload_successful{{{_I}}}": "1 1 0 0 0"}, "4m", True),
    ("LogravenReloadFailed", {f"lograven_config_last_reload_successful{{{_I}}}": "1x5"}, "4m", False),
    ("LogravenFileUnreadable", {f'lograven_file_readable{{{_I},file="/m"}}': "0x20"}, "15m", True),
    ("LogravenLinesFailing", {f'lograven_lines_dropped_total{{{_I},file="/m",reason="error"}}': "0 0 1 1 1"}, "4m", True),
    ("LogravenLinesFailing", {f'lograven_lines_dropped_total{{{_I},file="/m",reason="blank"}}': "0 0 9 9 9"}, "4m", False),
    ("LogravenLinesUnread", {f'lograven_unread_bytes_total{{{_I},file="/m"}}': "0 0 0 4096 4096"}, "4m", True),
    ("LogravenLinesUnread", {f'lograven_unread_bytes_total{{{_I},file="/m"}}': "0x30"}, "25m", False),
    ("LogravenCheckpointWriteFailing", {f"lograven_checkpoint_write_failures_total{{{_I}}}": "0 0 1 1 1"}, "4m", True),
    ("LogravenCheckpointWriteFailing", {f"lograven_checkpoint_write_failures_total{{{_I}}}": "0x30"}, "25m", False),
    ("LogravenAlertsRateLimited", {f'lograven_alerts_suppressed_total{{{_I},reason="rate_limit"}}': "0 0 22 22 22"}, "4m", True),
    ("LogravenAlertsRateLimited", {f'lograven_alerts_suppressed_total{{{_I},reason="dedup"}}': "0 0 22 22 22",
                                   f'lograven_alerts_suppressed_total{{{_I},reason="rate_limit"}}': "0x30"}, "25m", False),
    (
        "LogravenAnomalyStorm",
        {f'lograven_anomalies_total{{{_I},file="/m",detector="sequence"}}': "0+90x20",
         f'lograven_anomalies_total{{{_I},file="/m",detector="autoencoder"}}': "0+90x20"},
        "15m",
        True,
    ),
    (
        "LogravenAnomalyStorm",
        {f'lograven_anomalies_total{{{_I},file="/m",detector="sequence"}}': "0+30x20"},
        "15m",
        False,
    ),
]


def test_rule_expressions_select_what_they_should(tmp_path: Path) -> None:
    """promtool evaluates each alert's expression on made-up series: it fires exactly when it should."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian package: prometheus)")
    exprs = {r["alert"]: r["expr"] for r in _rules()}
    tests = [
        {
            "interval": "1m",
            "input_series": [{"series": s, "values": v} for s, v in series.items()],
            "promql_expr_test": [
                {
                    "expr": f"count({exprs[alert]})",
                    "eval_time": at,
                    "exp_samples": [{"labels": "{}", "value": 1}] if fires else [],
                }
            ],
        }
        for alert, series, at, fires in RULE_CASES
    ]
    spec = tmp_path / "rules_test.yml"
    spec.write_text(yaml.safe_dump({"rule_files": [str(RULES)], "evaluation_interval": "1m", "tests": tests}))
    result = subprocess.run([promtool, "test", "rules", str(spec)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert {alert for alert, *_ in RULE_CASES} == set(exprs), "every rule needs a case"


def test_a_listener_beyond_loopback_is_warned_about() -> None:
    """127.0.0.1 is the default; an address other hosts can reach is allowed, with a warning."""
    from lograven.metrics import exposure_warning

    for quiet in ("127.0.0.1:9077", "[::1]:9077", "9077", "localhost:9077", "127.0.0.2:1"):
        assert exposure_warning(quiet) is None, quiet
    for loud in ("0.0.0.0:9077", "[::]:9077", "192.0.2.10:9077", "prom.example:9077"):
        assert "without authentication" in (exposure_warning(loud) or ""), loud


def test_an_error_while_serving_is_said_and_serving_goes_on(monkeypatch, caplog) -> None:
    """One thread serves every connection: an unexpected error in it must not leave a dead /metrics
    beside a daemon that goes on detecting."""
    from lograven import metrics as metrics_mod

    real_step, failed = metrics_mod._Server._step, []

    def step_once_failing(self, conn):
        if not failed:
            failed.append(1)
            raise RuntimeError("boom")
        return real_step(self, conn)

    monkeypatch.setattr(metrics_mod._Server, "_step", step_once_failing)
    server = start_http_server("127.0.0.1:0", Metrics())
    try:
        with caplog.at_level("WARNING", logger="lograven.metrics"):
            assert "lograven_build_info" in _scrape(server.url)  # the request of the failed round, too
            assert "lograven_build_info" in _scrape(server.url)
        assert "serving /metrics failed; going on" in caplog.text and "boom" in caplog.text
    finally:
        server.stop()


def test_bytes_after_the_request_do_not_cut_the_answer() -> None:
    """Review of the day's diff: a client whose request body or second request came after the head got a
    reset after about 128 KB of a 1.4 MB answer (closed with bytes unread, the socket resets and drops what
    it had not sent). The server ends its side and reads the client's to its end before closing."""
    import time

    m = Metrics()
    for i in range(3000):
        m.lines_read.labels(file=f"/var/log/app/{i:05d}-{'x' * 40}.log").inc()
    server = start_http_server("127.0.0.1:0", m)
    try:
        for extra in (b"GET /metrics HTTP/1.1\r\n\r\n", b"x" * 10):
            with socket.create_connection((server.host, server.port), timeout=10) as c:
                c.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
                time.sleep(0.05)
                c.sendall(extra)
                time.sleep(0.3)  # the server has sent all it could and would close meanwhile
                out = b""
                while chunk := c.recv(65536):
                    out += chunk
            head, body = out.split(b"\r\n\r\n", 1)
            length = int(re.search(rb"Content-Length: (\d+)", head).group(1))
            assert length > 300_000 and len(body) == length
    finally:
        server.stop()


def test_a_stop_right_after_the_start_is_clean() -> None:
    """CI, 2026-12-07 (night): a daemon that failed at once stopped the endpoint before its thread had
    begun, which then failed on the closed socket (an exception in a thread)."""
    import threading

    errors = []
    old_hook = threading.excepthook
    threading.excepthook = lambda args: errors.append(args.exc_value)
    try:
        for _ in range(50):
            start_http_server("127.0.0.1:0", Metrics()).stop()
    finally:
        threading.excepthook = old_hook
    assert not errors
