"""The trace as HAR 1.2 (http://www.softwareishard.com/blog/har-12-spec/), which browsers'
developer tools and HAR viewers open. Only the HTTP exchanges go in; the checks the app makes
between them (signature, endpoint) are not requests. Bodies are the trace's: already masked."""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from urllib.parse import parse_qsl, urlsplit

from sfconnect.learn.trace import BODY_LIMIT

HAR_VERSION = "1.2"


def _pairs(pairs: Iterable[Iterable[str]]) -> list[dict[str, str]]:
    return [{"name": str(name), "value": str(value)} for name, value in pairs]


def _headers_size(headers: list[dict[str, str]]) -> int:
    return sum(len(h["name"]) + len(h["value"]) + 4 for h in headers) + 2


def _request(entry: Mapping) -> dict:
    url = entry["url"]
    headers = _pairs(entry.get("request_headers") or [])
    body = entry.get("request_body")
    request = {
        "method": entry.get("method") or "GET",
        "url": url,
        "httpVersion": "HTTP/1.1",
        "cookies": [],
        "headers": headers,
        "queryString": _pairs(parse_qsl(urlsplit(url).query, keep_blank_values=True)),
        "headersSize": _headers_size(headers),
        "bodySize": int(entry.get("request_size") or 0) if body is not None else 0,
    }
    if body is not None:
        mime = entry.get("request_mime") or "application/octet-stream"
        post: dict = {"mimeType": mime, "text": body}
        if "urlencoded" in mime:
            post["params"] = _pairs(parse_qsl(body, keep_blank_values=True))
        if entry.get("request_truncated"):
            post["comment"] = f"truncated to the first {_kept_kb(entry)} KB"
        request["postData"] = post
    return request


def _kept_kb(entry: Mapping) -> int:
    """How much of a cut body the entry kept: 64 KB, or less once the trace's budget shortened
    it (`shortened_to`, in characters)."""
    return int(entry.get("shortened_to") or BODY_LIMIT) // 1024


def _response(entry: Mapping) -> dict:
    headers = _pairs(entry.get("response_headers") or [])
    body = entry.get("response_body")
    content: dict = {"size": int(entry.get("response_size") or len((body or "").encode())),
                     "mimeType": entry.get("response_mime") or "x-unknown",
                     "text": body or ""}
    if entry.get("response_truncated"):
        content["comment"] = (f"truncated to the first {_kept_kb(entry)} KB; size is the whole "
                              "body's")
    location = next((h["value"] for h in headers if h["name"].lower() == "location"), "")
    return {
        "status": int(entry.get("status") or 0),
        "statusText": entry.get("status_text") or "",
        "httpVersion": "HTTP/1.1",
        "cookies": [],
        "headers": headers,
        "content": content,
        "redirectURL": location,
        "headersSize": _headers_size(headers) if headers else -1,
        "bodySize": int(entry.get("response_size") or 0) if body else 0,
    }


def to_har(entries: Iterable[Mapping], version: str = "1") -> dict:
    """A HAR 1.2 document of the trace's HTTP exchanges, in order."""
    har_entries = []
    for entry in entries:
        if not entry.get("http", True) or not entry.get("url"):
            continue
        time_ms = float(entry.get("time_ms") or 0)
        har_entries.append({
            "startedDateTime": entry["started_iso"],
            "time": time_ms,
            "request": _request(entry),
            "response": _response(entry),
            "cache": {},
            # The app measures each exchange whole; HAR wants the parts, so it is all "wait".
            "timings": {"send": 0, "wait": time_ms, "receive": 0},
            "comment": f"{entry['step']}" + (f": {entry['note']}" if entry.get("note") else ""),
        })
    return {"log": {
        "version": HAR_VERSION,
        "creator": {"name": "sfconnect", "version": version},
        "pages": [],
        "entries": har_entries,
        "comment": "The exchanges of one sfconnect session, secrets masked (codes and tokens "
                   "to their first 6 and last 4 characters; the client secret and the PKCE code "
                   "verifier hidden).",
    }}
