"""Secrets: sealed at rest, shown masked, redacted from anything recorded or logged."""

from __future__ import annotations

import logging

import pytest
from cryptography.fernet import Fernet

from core.errors import ConfigurationError
from core.secrets import RedactingFilter, SecretBox, mask, redact, register_secret_for_logs


@pytest.mark.parametrize("value", ["x", "ab", "abcdefg", "abcdefgh", "3f2a" + "0" * 28, "k" * 100])
def test_a_masked_secret_shows_at_most_two_characters_and_its_length(value):
    shown = mask(value)
    assert value not in shown and f"（{len(value)}位）" in shown
    assert len(shown.split("*", 1)[0]) <= 2


def test_nothing_to_mask_stays_empty():
    assert mask("") == "" and mask(None) == ""


def test_redact_replaces_every_occurrence_in_any_case():
    text = redact("authCode=AbCdEf123456 again abcdef123456", ["AbCdEf123456"])
    assert "AbCdEf123456".lower() not in text.lower()
    assert text.count("（12位）") == 2


def test_a_sealed_secret_opens_only_with_its_key():
    box = SecretBox(Fernet.generate_key())
    sealed = box.seal("sm4-key-0123456789")
    assert sealed.startswith("enc:") and "sm4-key" not in sealed
    assert box.open(sealed) == "sm4-key-0123456789"
    with pytest.raises(ConfigurationError, match="无法解密"):
        SecretBox(Fernet.generate_key()).open(sealed)


def test_registered_secrets_are_redacted_from_log_records(caplog):
    register_secret_for_logs("auth-code-for-logs-42")
    logger = logging.getLogger("baosong.test_secrets")
    logger.addFilter(RedactingFilter())
    with caplog.at_level(logging.INFO):
        logger.info("sending with %s", "auth-code-for-logs-42")
    assert "auth-code-for-logs-42" not in caplog.text and "（21位）" in caplog.text


def test_patient_id_and_phone_numbers_are_masked_in_log_lines_and_tracebacks():
    import io

    from core.logs import formatter

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter())
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger("baosong.test_secrets.patients")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("HIS row refused: certno %s tel %s", "36010219900101123X", "13912345678")
        try:
            raise ValueError("bad row for 360102199001011234")
        except ValueError:
            logger.exception("planning failed")
    finally:
        logger.removeHandler(handler)
    text = stream.getvalue()
    for identifier in ("36010219900101123X", "13912345678", "360102199001011234"):
        assert identifier not in text
    assert "360102********123X" in text and "139****5678" in text and "ValueError" in text
