"""The masking rules of ``grinder.redaction`` and the places that apply them in-process."""

from __future__ import annotations

import io
import logging
import threading
from pathlib import Path

import click
import pytest

from grinder.cli.errors import EXIT_FAILED, EXIT_USAGE, run_command
from grinder.cli.main import cli
from grinder.config_sources import check_http_url
from grinder.ha.config import HaConfig, HaSettings
from grinder.ha.connection import check_url
from grinder.reconcile.config import ConfigError
from grinder.redaction import (
    MASK,
    REDACTED,
    MaskingStream,
    mask_secrets,
    mask_url,
    masked_std_streams,
    redact,
    redact_text,
    register_environment,
    register_secret,
    register_url,
)
from grinder.reporting.logs import configure_logging
from grinder.service.artifacts import Tee
from grinder.service.control import _dumps
from grinder.service.options import ServiceOptions

# --- mask_url --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:pw1@h:6379/0", "redis://:***@h:6379/0"),
        ("redis://user:pw1@h:6379/0", "redis://user:***@h:6379/0"),
        ("http://user:pw1@127.0.0.1:8765", "http://user:***@127.0.0.1:8765"),
        ("https://TOKENVALUE@host/x", "https://***@host/x"),  # a lone user info: a token
        ("redis://h:6379/0?password=pw1&db=1", "redis://h:6379/0?password=***&db=1"),
        ("unix:///run/redis.sock?password=pw1", "unix:///run/redis.sock?password=***"),
        (
            "ws://h/private/ws?listenKey=abc&events=A/B",
            "ws://h/private/ws?listenKey=***&events=A/B",
        ),
        # malformed: every password still hidden
        ("redis//:pw1@host:6379", "redis//:***@host:6379"),
        ("redis:/:pw1@host", "redis:/:***@host"),
        ("redis://:pw1/more@host:6379", "redis://:***@host:6379"),
        ("redis://:pw1#more@host", "redis://:***@host"),
        ("redis://:pw1?more@host", "redis://:***@host"),
        ("redis://:p@w1@host", "redis://:***@host"),
        ("user:pw1@host", "user:***@host"),
        # nothing to hide
        ("http://127.0.0.1:9090/metrics", "http://127.0.0.1:9090/metrics"),
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
    ],
)
def test_mask_url_hides_the_password_of_any_url_well_formed_or_not(url: str, shown: str) -> None:
    assert mask_url(url) == shown
    assert mask_url(shown) == shown  # idempotent


# --- free text -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        (
            "got 'redis//:pw1@host:6379' from --redis-url",
            "got 'redis//:***@host:6379' from --redis-url",
        ),
        ("error (http://u:pw1@h:1/x), retrying", "error (http://u:***@h:1/x), retrying"),
        (
            '{"redis": "redis://:pw1@h:1/0", "token": 5}',
            '{"redis": "redis://:***@h:1/0", "token": 5}',
        ),
        (
            "url='ws://u:pw1@h/private/ws?listenKey=k1'",
            "url='ws://u:***@h/private/ws?listenKey=***'",
        ),
        ("host=a:pw1@b", "host=a:***@b"),
    ],
)
def test_mask_secrets_masks_the_credentials_inside_text(text: str, shown: str) -> None:
    assert mask_secrets(text) == shown
    assert mask_secrets(shown) == shown


@pytest.mark.parametrize(
    "text",
    [
        '{"ha": {"token": 5, "max_token_seen": 4}}',
        "placed BUY 0.001 @ 60000  grinder_d_BTCUSDT_1_1704067200_1",
        "mail ops@example.com, see @click.command()",
        "GET /fapi/v1/order?symbol=BTCUSDT&orderId=1",
        "",
    ],
)
def test_mask_secrets_leaves_text_without_credentials_alone(text: str) -> None:
    assert mask_secrets(text) == text


def test_redact_text_adds_the_key_value_rules_and_does_not_mask_twice() -> None:
    text = "redis://h?password=pw1 token=abc Authorization: Bearer xyz"
    once = redact_text(text)
    for secret in ("pw1", "abc", "xyz"):
        assert secret not in once
    assert "redis://h?password=***" in once
    assert f"token={REDACTED}" in once
    assert redact_text(once) == once


def test_redact_by_name_or_only_inside_texts() -> None:
    record = {"token": 5, "url": "http://u:pw1@h", "nested": [{"api_secret": "s"}]}
    assert redact(record) == {
        "token": REDACTED,
        "url": "http://u:***@h",
        "nested": [{"api_secret": REDACTED}],
    }
    assert redact(record, by_name=False) == {
        "token": 5,
        "url": "http://u:***@h",
        "nested": [{"api_secret": "s"}],
    }


# --- registered secrets ----------------------------------------------------------------------


def test_a_registered_secret_is_masked_wherever_it_appears() -> None:
    register_secret("rEgIsTeReD-s3cret%2F1")
    assert mask_secrets("a rEgIsTeReD-s3cret%2F1 b") == f"a {MASK} b"
    assert mask_secrets("decoded rEgIsTeReD-s3cret/1!") == f"decoded {MASK}!"
    assert redact_text("x=rEgIsTeReD-s3cret/1") == f"x={MASK}"
    register_secret("pw")  # too short to mask everywhere: it would garble the output
    assert mask_secrets("pwd pw") == "pwd pw"


def test_register_url_takes_the_password_even_of_a_malformed_url() -> None:
    register_url("redis//:mAlFoRmEd-pw1@host:6379")
    register_url("redis://h/0?password=qUeRy-pw1")
    assert mask_secrets("port 'mAlFoRmEd-pw1' and qUeRy-pw1") == f"port '{MASK}' and {MASK}"


def test_register_environment_takes_secret_names_and_url_passwords_not_file_paths() -> None:
    register_environment(
        {
            "BINANCE_API_SECRET": "eNv-sEcReT-1",
            "GRINDER_REDIS_URL": "redis://:eNv-rEdIs-pw1@h:6379/0",
            "BINANCE_API_KEY_FILE": "/run/secrets/eNv-kEy-pAtH",
            "HOME": "/home/eNv-hOmE",
        }
    )
    text = "eNv-sEcReT-1 eNv-rEdIs-pw1 /run/secrets/eNv-kEy-pAtH /home/eNv-hOmE"
    assert mask_secrets(text) == f"{MASK} {MASK} /run/secrets/eNv-kEy-pAtH /home/eNv-hOmE"


# --- the checks of URL options name the flag, never the password -------------------------


@pytest.mark.parametrize(
    "url",
    [
        "redis//:cHeCk-pw1@host:6379",
        "http://:cHeCk-pw1@host:6379",
        "redis://:cHeCk-pw1/x@host:6379",
        "redis://:cHeCk-pw1@host:port",
        "redis://:cHeCk-pw1@host:0",
        "redis://:cHeCk-pw1@[host",
        "redis://:cHeCk-pw1@",
    ],
)
def test_a_bad_redis_url_is_refused_without_its_password(url: str) -> None:
    with pytest.raises(ValueError, match=r"^GRINDER_REDIS_URL: ") as err:
        check_url(url, where="GRINDER_REDIS_URL")
    assert "cHeCk-pw1" not in str(err.value)
    assert ":***@" in str(err.value)


@pytest.mark.parametrize(
    "url",
    [
        "http//u:cHeCk-pw2@host:1",
        "ftp://u:cHeCk-pw2@host",
        "http://u:cHeCk-pw2/x@host:1",
        "http://u:cHeCk-pw2@host:99999",
        "http://u:cHeCk-pw2@:1",
    ],
)
def test_a_bad_http_url_is_refused_without_its_password(url: str) -> None:
    with pytest.raises(ConfigError, match=r"^--venue-url: ") as err:
        check_http_url(url, "--venue-url")
    assert "cHeCk-pw2" not in str(err.value)


def test_reprs_of_the_options_mask_their_urls() -> None:
    ha = HaSettings("redis://:rEpR-pw1@h:6379/0", "a", HaConfig())
    opts = ServiceOptions(venue_url="http://u:rEpR-pw2@h:1", ha=ha)
    for text in (repr(ha), repr(opts)):
        assert "rEpR-pw" not in text
    assert "redis://:***@h:6379/0" in repr(opts)
    assert "venue_url='http://u:***@h:1'" in repr(opts)


# --- the writers -------------------------------------------------------------------------------


def test_masking_stream_masks_whole_lines_even_written_in_pieces() -> None:
    out = io.StringIO()
    stream = MaskingStream(out)
    for piece in ("url redis://:sPl", "It-pw1@h:1/0 and ", "more\nnext http://u:x", "yz1@h"):
        stream.write(piece)
    assert out.getvalue() == "url redis://:***@h:1/0 and more\n"
    stream.flush()
    assert out.getvalue().endswith("next http://u:***@h")
    with pytest.raises(TypeError):
        stream.write(b"bytes")  # type: ignore[arg-type]


def test_masking_stream_keeps_lines_whole_across_threads() -> None:
    out = io.StringIO()
    stream = MaskingStream(out)

    def writer(n: int) -> None:
        for _ in range(200):
            stream.write(f"w{n} redis://:tHrEaD-pw1@h:1/0\n")

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lines = out.getvalue().splitlines()
    assert len(lines) == 800
    assert all(line.endswith(" redis://:***@h:1/0") for line in lines)


def test_click_echo_goes_through_the_masking_stream(capsys: pytest.CaptureFixture[str]) -> None:
    with masked_std_streams():
        click.echo("to http://u:eChO-pw1@h:1")
        click.echo("err http://u:eChO-pw1@h:1", err=True)
    out = capsys.readouterr()
    assert out.out == "to http://u:***@h:1\n"
    assert out.err == "err http://u:***@h:1\n"


def test_tee_masks_stdout_and_stdout_log(tmp_path: Path) -> None:
    log = tmp_path / "stdout.log"
    out = io.StringIO()
    tee = Tee(log, out)
    tee.line("  venue: sim (http://u:tEe-pw1@h:1)")
    tee.record("error: redis://:tEe-pw1@h:1/0 down")
    tee.close()
    for text in (out.getvalue(), log.read_text()):
        assert "tEe-pw1" not in text
    assert "http://u:***@h:1" in log.read_text()


def test_log_lines_and_their_tracebacks_are_redacted() -> None:
    stream = io.StringIO()
    logger = logging.getLogger("grinder")
    saved = logger.level, logger.propagate
    configure_logging(stream=stream)
    try:
        try:
            raise ConnectionError("cannot reach ws://u:lOg-pw1@h/private/ws?listenKey=k")
        except ConnectionError:
            logging.getLogger("grinder.test").exception("STREAM_ERROR url=%s", "http://u:lOg-pw1@h")
    finally:
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]
    text = stream.getvalue()
    assert "lOg-pw1" not in text
    assert "ConnectionError: cannot reach ws://u:***@h/private/ws?listenKey=***" in text


def test_control_replies_mask_texts_but_keep_field_names() -> None:
    reply = _dumps({"ha": {"token": 3, "redis": "redis://:cTl-pw1@h:1/0"}, "e": "x token=y"})
    assert "cTl-pw1" not in reply
    assert '"token": 3' in reply
    assert f"token={REDACTED}" in reply


# --- run_command: the one error line ---------------------------------------------------------


@click.command("leaky")
@click.option("--kind", default="failure")
def leaky(kind: str) -> None:
    if kind == "usage":
        raise click.UsageError("bad: redis://:rUn-pw1@h:1/0")
    if kind == "config":
        raise ConfigError("--redis-url: got 'redis//:rUn-pw1@h'")
    print("out http://u:rUn-pw1@h:1")
    raise RuntimeError("boom at http://u:rUn-pw1@h:1")


@pytest.mark.parametrize(
    ("kind", "code"), [("usage", EXIT_USAGE), ("config", EXIT_USAGE), ("failure", EXIT_FAILED)]
)
def test_run_command_never_prints_a_password(
    kind: str, code: int, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GRINDER_DEBUG", raising=False)
    assert run_command(leaky, ["--kind", kind], prog_name="leaky") == code
    out = capsys.readouterr()
    assert "rUn-pw1" not in out.out + out.err
    assert out.err.count("\n") == 1
    assert out.err.startswith("leaky: error: ")


def test_the_debug_traceback_is_masked_too(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GRINDER_DEBUG", "1")
    assert run_command(leaky, [], prog_name="leaky") == EXIT_FAILED
    err = capsys.readouterr().err
    assert "Traceback" in err
    assert "RuntimeError: boom at http://u:***@h:1" in err
    assert "rUn-pw1" not in err


def test_a_bad_redis_url_of_expected_adopt_is_one_masked_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["expected", "adopt", "--redis-url", "redis//:aDoPt-pw1@host:6379", "--yes"]
    argv += ["--venue-url", "http://127.0.0.1:1"]
    assert run_command(cli, argv, prog_name="grinder") == EXIT_USAGE
    err = capsys.readouterr().err
    assert err == (
        "grinder: error: --redis-url: expected redis://host:port[/db], rediss://… or "
        "unix:///path, got 'redis//:***@host:6379'\n"
    )


def test_a_url_path_ending_in_a_secret_name_is_not_a_secret_pair() -> None:
    line = "429 on POST /fapi/v1/listenKey: waiting 60.0 s (Retry-After)"
    assert redact_text(line) == line
    assert "abcdef123456" not in redact_text("listenKey: abcdef123456")
