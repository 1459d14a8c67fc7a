"""The identity service: GET /id/<orgId>/<userId>, in the shape Salesforce returns it."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from flask import Blueprint, Flask, Response, current_app, jsonify, request

from .state import OrgState

bp = Blueprint("devorg_identity", __name__)


def bad_token() -> Response:
    """Salesforce's answer to a bad, expired or foreign token: 403, a bare text body."""
    return Response("Bad_OAuth_Token", 403, content_type="text/plain;charset=UTF-8")


def _bearer_token() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    # Salesforce also takes the older "OAuth <token>" scheme and ?oauth_token=.
    if scheme.lower() in ("bearer", "oauth") and value.strip():
        return value.strip()
    return request.args.get("oauth_token") or None


def _utc_offset_ms(timezone: str) -> int:
    try:
        now = datetime.now(ZoneInfo(timezone))
    except (ZoneInfoNotFoundError, ValueError):
        return 0
    # Salesforce reports the zone's standard offset, daylight saving left out.
    standard = (now.utcoffset() or timedelta(0)) - (now.dst() or timedelta(0))
    return int(standard.total_seconds() * 1000)


def _iso(value: object) -> str | None:
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return None


def identity_document(org: OrgState, user: dict, base: str) -> dict:
    """The identity JSON of `user`: the keys and order of Salesforce's, URLs on `base`."""
    org15 = org.org_id[:15]
    user_id = user["Id"]
    soap = f"{base}/services/Soap/{{kind}}/{{{{version}}}}/{org15}"
    rest = f"{base}/services/data/v{{version}}"
    return {
        "id": f"{base}/id/{org.org_id}/{user_id}",
        "asserted_user": True,
        "user_id": user_id,
        "organization_id": org.org_id,
        "username": user["Username"],
        "nick_name": user.get("CommunityNickname") or user["Username"].split("@")[0],
        "display_name": user.get("Name"),
        "email": user.get("Email"),
        "email_verified": True,
        "first_name": user.get("FirstName"),
        "last_name": user.get("LastName"),
        "timezone": user.get("TimeZoneSidKey"),
        "photos": {
            "picture": f"{base}/profilephoto/005/F",
            "thumbnail": f"{base}/profilephoto/005/T",
        },
        "addr_street": None,
        "addr_city": None,
        "addr_state": None,
        "addr_country": None,
        "addr_zip": None,
        "mobile_phone": None,
        "mobile_phone_verified": False,
        "is_lightning_login_user": False,
        "status": {"created_date": None, "body": None},
        # Salesforce's keys in its order, less the URLs this org does not serve (the enterprise,
        # metadata and tooling SOAP APIs, search, recent, tooling_rest, the profile page,
        # Chatter): a client may follow any of these.
        "urls": {
            "partner": soap.format(kind="u"),
            "rest": f"{rest}/",
            "sobjects": f"{rest}/sobjects/",
            "query": f"{rest}/query/",
            "custom_domain": base,
        },
        "active": bool(user.get("IsActive", True)),
        "user_type": str(user.get("UserType") or "Standard").upper(),
        "language": user.get("LanguageLocaleKey") or "en_US",
        "locale": user.get("LocaleSidKey") or "en_US",
        "utcOffset": _utc_offset_ms(user.get("TimeZoneSidKey") or "UTC"),
        "last_modified_date": _iso(user.get("LastModifiedDate")),
        "is_app_installed": True,
    }


def _same_id(given: str, full: str) -> bool:
    # Salesforce accepts the 15- and the 18-character form of an id.
    return given == full or (len(given) == 15 and full.startswith(given))


@bp.get("/id/<org_id>/<user_id>")
def identity(org_id: str, user_id: str) -> Response:
    """Who the token's user is; 403 Bad_OAuth_Token unless the token is theirs and alive."""
    org: OrgState = current_app.extensions["devorg"]
    org.counters.incr("identity")
    fault = org.faults.identity_endpoint
    if fault == "403":
        return bad_token()
    if fault == "500":
        return Response("<html><body><h1>Internal Server Error</h1></body></html>", 500,
                        content_type="text/html;charset=UTF-8")
    record = org.tokens.lookup_access(_bearer_token())
    if (record is None or not _same_id(org_id, org.org_id)
            or not _same_id(user_id, record.user_id)):
        return bad_token()
    user = org.data.user_by_id(record.user_id)
    if user is None:
        return bad_token()
    document = identity_document(org, user, request.host_url.rstrip("/"))
    if org.faults.identity_partner_url:
        document["urls"]["partner"] = org.faults.identity_partner_url
    version = request.args.get("version")
    if version and version in org.config.api_versions:
        # ?version=66.0 fills the {version} placeholders, as Salesforce does.
        document["urls"] = {k: v.replace("{version}", version)
                            for k, v in document["urls"].items()}
    return jsonify(document)


def init_app(app: Flask, org: OrgState) -> None:
    """Register the identity service."""
    app.register_blueprint(bp)
