"""Secrets are masked in every log line, whichever logger writes it."""
import logging

from sfconnect.redaction import install_log_redaction, mask, redact

ACCESS_TOKEN = "00D5g000004ZbXy!AQoAQAtUIExiwGnzHa1ES.dfQJYX_xumavP1nXL5sudjgrBPF8aM5WVsAYM9"
REFRESH_TOKEN = "5Aep861TSESvWeug_xvFHRBTTbf_YrTWgEyjBJrHnpHfMEAxmUsbJjiV1KXxjJT4xWL"


def test_mask_keeps_first_six_and_last_four():
    assert mask(ACCESS_TOKEN) == ACCESS_TOKEN[:6] + "…" + ACCESS_TOKEN[-4:]
    assert mask("short") == "*****"


def test_redact_masks_query_params_bearer_session_id_and_bare_tokens():
    text = (f"GET /oauth/callback?code=aPrxSecretCode123456&state=abc "
            f"Authorization: Bearer {ACCESS_TOKEN} <sessionId>{ACCESS_TOKEN}</sessionId> "
            f"refresh_token={REFRESH_TOKEN}&client_secret=verysecretvalue123 {ACCESS_TOKEN}")
    redacted = redact(text)
    for secret in (ACCESS_TOKEN, REFRESH_TOKEN, "aPrxSecretCode123456", "verysecretvalue123"):
        assert secret not in redacted
    assert "state=abc" in redacted


def test_every_logger_is_redacted(caplog):
    install_log_redaction()
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("werkzeug").info('"GET /oauth/callback?code=%s HTTP/1.1" 302', "c0de" * 8)
        logging.getLogger("zeep.transports").debug("<sessionId>%s</sessionId>", ACCESS_TOKEN)
    assert "c0de" * 8 not in caplog.text
    assert ACCESS_TOKEN not in caplog.text
