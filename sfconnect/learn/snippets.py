"""Copy as: one exchange of the trace as code to run yourself (curl, Python, JavaScript).

An entry of the trace holds the request as the app sent it, every secret already masked
(sfconnect.redaction). This module reads that request back (method, URL, headers, body) and writes
it in each language with every secret slot filled from an environment variable named after what
it holds: a form field `client_secret` is `$SF_CLIENT_SECRET`, `code` is `$SF_CODE`, a Bearer
token or the SOAP `<sessionId>` is `$SF_ACCESS_TOKEN`, and so on (ENV_OF_PARAM). A code or a
token, masked or not, never appears in the code. Each snippet starts with a comment naming the
step and the rule it follows. Nothing here is sent anywhere: this is text for the learner.
"""
from __future__ import annotations

import json
import re
import shlex
import textwrap
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import parse_qsl, quote, urlsplit, urlunsplit

from lxml import etree

from sfconnect.learn import trace

PARTNER_NS = "urn:partner.soap.sforce.com"
PARTNER_BINDING = f"{{{PARTNER_NS}}}SoapBinding"


@dataclass(frozen=True)
class Env:
    """A value read from the environment variable `name` when the snippet runs."""

    name: str


# A value as a sequence of literal text and environment variables, concatenated.
Text = tuple["str | Env", ...]

# The environment variable that stands for each secret, by the parameter that carries it.
ENV_OF_PARAM: dict[str, str] = {
    "client_secret": "SF_CLIENT_SECRET",
    "code": "SF_CODE",
    "code_verifier": "SF_CODE_VERIFIER",
    "refresh_token": "SF_REFRESH_TOKEN",
    "access_token": "SF_ACCESS_TOKEN",
    "sessionId": "SF_ACCESS_TOKEN",
    "id_token": "SF_ID_TOKEN",
    "password": "SF_PASSWORD",
    "assertion": "SF_ASSERTION",
    "client_assertion": "SF_CLIENT_ASSERTION",
}
# What to put in each variable (the comment of every snippet that reads it says so).
ENV_MEANING: dict[str, str] = {
    "SF_CLIENT_SECRET": "the External Client App's consumer secret",
    "SF_CODE": "the code from the callback URL (single-use, lives 15 minutes)",
    "SF_CODE_VERIFIER": "the PKCE code verifier you made for this sign-in (43 to 128 characters "
                        "of A-Z a-z 0-9 - . _ ~)",
    "SF_CODE_CHALLENGE": "computed here from SF_CODE_VERIFIER: BASE64URL(SHA256(verifier))",
    "SF_ACCESS_TOKEN": "the access_token of the token response",
    "SF_REFRESH_TOKEN": "the refresh_token of the token response",
    "SF_ID_TOKEN": "the id_token of the token response",
    "SF_PASSWORD": "the user's password",
    "SF_ASSERTION": "a signed JWT assertion",
    "SF_CLIENT_ASSERTION": "a signed JWT client assertion",
    "SF_AUTHORIZATION": "the whole Authorization header value",
}
# Headers the client sets by itself (or that carry nothing the server needs).
_SKIPPED_HEADERS = frozenset({"user-agent", "accept-encoding", "connection", "content-length",
                              "host", "cookie"})
# What each exchange the trace names no rule for follows.
_RULES_BY_PATH = (
    ("/.well-known/openid-configuration",
     "OpenID Connect Discovery 1.0 §4: the login host's metadata (issuer, endpoints, jwks_uri)."),
    ("/id/keys", "The login host's JSON Web Key Set (RFC 7517): the keys that sign id_tokens."),
    ("/services/oauth2/userinfo",
     "OpenID Connect Core §5.3: the UserInfo endpoint, with Authorization: Bearer (RFC 6750); "
     "its sub must be the id_token's."),
)
_SESSION_ID_RE = re.compile(r"(<(?:[\w.-]+:)?sessionId>)([^<]*)(</)")
_JSON_SECRET_RE = re.compile(
    r"(\"(?:" + "|".join(ENV_OF_PARAM) + r")\"\s*:\s*\")([^\"]*)(\")")


@dataclass(frozen=True)
class Request:
    """An exchange's request as the snippets write it: secrets as environment variables."""

    seq: int
    step: str
    method: str
    url: str  # without its query string
    query: tuple[tuple[str, Text], ...]
    headers: tuple[tuple[str, Text], ...]
    form: tuple[tuple[str, Text], ...] | None  # an application/x-www-form-urlencoded body
    body: Text | None  # any other body
    raw_body: str | None  # the body as the trace shows it (masked), for reading SOAP
    authorize: bool  # the authorization request: a URL for the browser

    @property
    def env_names(self) -> list[str]:
        """The environment variables the request reads, in order of first use."""
        names: list[str] = []
        values = [*(v for _, v in self.query), *(v for _, v in self.headers),
                  *(v for _, v in self.form or ()), *([self.body] if self.body else [])]
        for value in values:
            for part in value:
                if isinstance(part, Env) and part.name not in names:
                    names.append(part.name)
        if "SF_CODE_CHALLENGE" in names:
            names.insert(names.index("SF_CODE_CHALLENGE"), "SF_CODE_VERIFIER")
        return list(dict.fromkeys(names))


@dataclass(frozen=True)
class Snippet:
    """One way to send the request: `key` ("curl", "python", "zeep", "javascript", "jsforce"),
    the label shown on /flow, and the code."""

    key: str
    label: str
    code: str


# ------------------------------------------------------------------------- reading an entry

def env_for(name: str, value: str) -> str | None:
    """The environment variable for parameter `name` holding `value` (masked or not), or None
    when it is no secret. Revoke's `token` is the access token when it looks like one (the org
    id, then "!"), else the refresh token."""
    if name == "token":
        return "SF_ACCESS_TOKEN" if value.startswith("00D") else "SF_REFRESH_TOKEN"
    return ENV_OF_PARAM.get(name)


def _param(name: str, value: str) -> Text:
    env = env_for(name, value)
    if name == "code_challenge":
        env = "SF_CODE_CHALLENGE"  # it must match the verifier the learner makes
    return (Env(env),) if env else (value,)


def _header(name: str, value: str) -> Text:
    if name.lower() != "authorization":
        return (value,)
    scheme, _, _credentials = value.partition(" ")
    if scheme.lower() in ("bearer", "oauth"):
        return (f"{scheme} ", Env("SF_ACCESS_TOKEN"))
    return (Env("SF_AUTHORIZATION"),)


def _text_with_secrets(text: str) -> Text:
    """A body with its secret slots (the SOAP sessionId, JSON secrets) as environment variables."""
    parts: list[str | Env] = []
    pattern = _SESSION_ID_RE if "sessionId>" in text else _JSON_SECRET_RE
    at = 0
    for match in pattern.finditer(text):
        name = "sessionId" if pattern is _SESSION_ID_RE else match.group(1).split('"')[1]
        parts.append(text[at:match.end(1)])
        parts.append(Env(env_for(name, match.group(2)) or "SF_SECRET"))
        at = match.start(3)
    parts.append(text[at:])
    return tuple(p for p in parts if p != "")


def request_of(entry: Mapping[str, object], seq: int) -> Request | None:
    """The request of a trace entry as snippets write it; None when there is nothing to copy
    (a check between exchanges, the browser's own requests to this app, a cut body)."""
    if not entry.get("http", True) or not entry.get("url") or entry.get("request_truncated"):
        return None
    step = str(entry.get("step") or "")
    url = str(entry["url"])
    method = str(entry.get("method") or "GET")
    authorize = step == "authorization request"
    if authorize:  # the redirect's target is the request: the browser sends it to Salesforce
        url = next((str(v) for k, v in entry.get("response_headers") or []
                    if str(k).lower() == "location"), "")
        method = "GET"
        if "/services/oauth2/authorize" not in url:
            return None
    elif entry.get("purpose") == "browser":
        return None
    parts = urlsplit(url)
    query = tuple((k, _param(k, v)) for k, v in parse_qsl(parts.query, keep_blank_values=True))
    headers = tuple((str(k), _header(str(k), str(v)))
                    for k, v in entry.get("request_headers") or []
                    if str(k).lower() not in _SKIPPED_HEADERS)
    body = entry.get("request_body")
    mime = str(entry.get("request_mime") or "")
    form = text = None
    if body is not None and "urlencoded" in mime:
        form = tuple((k, _param(k, v)) for k, v in parse_qsl(str(body), keep_blank_values=True))
    elif body is not None:
        text = _text_with_secrets(str(body))
    return Request(seq=seq, step=step, method=method.upper(),
                   url=urlunsplit(parts._replace(query="", fragment="")), query=query,
                   headers=headers, form=form, body=text,
                   raw_body=None if body is None else str(body), authorize=authorize)


def rule_of(request: Request) -> str:
    """What the step is for and the rule it follows (the trace's text, or this module's)."""
    text = trace.explanation(request.step)
    if text:
        return text
    path = urlsplit(request.url).path
    return next((rule for end, rule in _RULES_BY_PATH if path.endswith(end)), "")


# ------------------------------------------------------------------------------ languages

class _Language:
    comment = "#"
    indent = "    "

    def literal(self, text: str) -> str:
        raise NotImplementedError

    def env(self, name: str) -> str:
        raise NotImplementedError

    def value(self, value: Text) -> str:
        """A value as an expression: literals and variables concatenated."""
        merged: list[str | Env] = []
        for part in value:  # adjacent literals as one: 'Accept: application/json', not two
            if merged and isinstance(part, str) and isinstance(merged[-1], str):
                merged[-1] += part
            else:
                merged.append(part)
        pieces = [self.env(p.name) if isinstance(p, Env) else self.literal(p) for p in merged]
        return self.join(pieces or [self.literal("")])

    def join(self, pieces: list[str]) -> str:
        return " + ".join(pieces)

    def header(self, request: Request, tool: str, extra: Iterable[str] = ()) -> list[str]:
        """The opening comment: the step, the rule, and the variables to set."""
        lines = [f"{request.seq}. {request.step}: {request.method} {request.url} "
                 f"({tool}), as sfconnect sent it."]
        rule = rule_of(request)
        if rule:
            lines += textwrap.wrap(rule, 92)
        names = request.env_names
        if names:
            lines.append("Secrets come from the environment, never from this code:")
            lines += [f"  {name}: {ENV_MEANING.get(name, 'a secret')}" for name in names]
        lines += list(extra)
        return [f"{self.comment} {line}".rstrip() for line in lines]


class _Shell(_Language):
    def literal(self, text: str) -> str:
        return shlex.quote(text) if text else ""

    def env(self, name: str) -> str:
        return f'"${name}"'

    def join(self, pieces: list[str]) -> str:
        return "".join(pieces) or "''"


class _Python(_Language):
    def literal(self, text: str) -> str:
        return json.dumps(text, ensure_ascii=False)

    def env(self, name: str) -> str:
        return f'os.environ["{name}"]'


class _JavaScript(_Language):
    comment = "//"
    indent = "  "

    def literal(self, text: str) -> str:
        return json.dumps(text, ensure_ascii=False)

    def env(self, name: str) -> str:
        return f"process.env.{name}"


SHELL, PYTHON, JAVASCRIPT = _Shell(), _Python(), _JavaScript()


def _dict(language: _Language, pairs: Iterable[tuple[str, Text]], indent: str) -> str:
    """A Python dict or JavaScript object literal, one entry a line."""
    items = [f"{indent}{language.indent}{json.dumps(k, ensure_ascii=False)}: {language.value(v)},"
             for k, v in pairs]
    return "{\n" + "\n".join(items) + f"\n{indent}}}" if items else "{}"


# ---------------------------------------------------------------------------------- curl

def curl(request: Request) -> str:
    """The request as a curl command (bash): status line, headers and body on stdout."""
    lines = SHELL.header(request, "curl")
    if request.authorize:
        lines.append("SF_CODE_CHALLENGE=$(printf %s \"$SF_CODE_VERIFIER\" | openssl dgst "
                     "-sha256 -binary | basenc --base64url | tr -d '=')")
    args = ["curl -sS -i"]
    if request.authorize:
        args = ["curl -sS -o /dev/null -w '%{http_code}\\nOpen in a browser: "
                "%{url_effective}\\n'"]
    in_url = request.method != "GET"  # -G would turn a body into the query string
    if request.query and not in_url:
        args.append("-G")
    if request.method not in ("GET", "POST") or (request.method == "POST" and not (
            request.form or request.body)):
        args.append(f"-X {request.method}")
    url: Text = (request.url,)
    if request.query and in_url:
        url = (request.url + "?",)
        for index, (name, value) in enumerate(request.query):
            url += ("&" if index else "") + quote(name, safe="") + "=",
            url += tuple(quote(p, safe="") if isinstance(p, str) else p for p in value)
    args.append(SHELL.value(url))
    args += [f"-H {SHELL.value((f'{name}: ', *value))}" for name, value in request.headers]
    for name, value in (*(() if in_url else request.query), *(request.form or ())):
        args.append(f"--data-urlencode {SHELL.value((f'{name}=', *value))}")
    if request.body is not None:
        args.append(f"--data-binary {SHELL.value(request.body)}")
    lines.append(" \\\n  ".join(args))
    return "\n".join(lines) + "\n"


# -------------------------------------------------------------------------------- Python

def python_requests(request: Request) -> str:
    """The request with Python's requests: prints the status, then the body."""
    lines = PYTHON.header(request, "Python, requests")
    lines += [*(["import base64", "import hashlib"] if request.authorize else []), "import os", "",
              "import requests", ""]
    if request.authorize:
        lines += ['verifier = os.environ["SF_CODE_VERIFIER"].encode()',
                  'os.environ["SF_CODE_CHALLENGE"] = base64.urlsafe_b64encode(',
                  '    hashlib.sha256(verifier).digest()).rstrip(b"=").decode()', ""]
    args = [PYTHON.literal(request.method), PYTHON.literal(request.url)]
    if request.query:
        args.append(f"params={_dict(PYTHON, request.query, '    ')}")
    if request.headers:
        args.append(f"headers={_dict(PYTHON, request.headers, '    ')}")
    if request.form is not None:
        args.append(f"data={_dict(PYTHON, request.form, '    ')}")
    elif request.body is not None:
        args.append(f"data=({PYTHON.value(request.body)}).encode()")
    args += ["allow_redirects=False", "timeout=30"]
    lines.append("response = requests.request(\n" + "".join(f"    {a},\n" for a in args) + ")")
    lines.append("print(response.status_code)")
    if request.authorize:
        lines.append('print("Open in a browser:", response.url)')
    else:
        lines.append("print(response.text)")
    return "\n".join(lines) + "\n"


def _soap_call(request: Request) -> tuple[str, dict[str, str], dict[str, dict[str, str]]] | None:
    """(operation, its arguments, its SOAP headers other than the SessionHeader) of a partner
    API envelope, or None when the body is not one."""
    try:
        parser = etree.XMLParser(resolve_entities=False, no_network=True)
        envelope = etree.fromstring((request.raw_body or "").encode(), parser)
    except etree.XMLSyntaxError:
        return None
    soap = "{http://schemas.xmlsoap.org/soap/envelope/}"
    body = envelope.find(f"{soap}Body")
    if body is None or len(body) == 0 or etree.QName(body[0]).namespace != PARTNER_NS:
        return None
    operation = body[0]
    arguments = {etree.QName(child).localname: child.text or "" for child in operation}
    headers: dict[str, dict[str, str]] = {}
    for header in envelope.find(f"{soap}Header") if envelope.find(f"{soap}Header") is not None \
            else ():
        name = etree.QName(header).localname
        if name != "SessionHeader":
            headers[name] = {etree.QName(child).localname: child.text or "" for child in header}
    return etree.QName(operation).localname, arguments, headers


def python_zeep(request: Request) -> str | None:
    """A SOAP partner API call with zeep and the partner WSDL: prints size, done, the
    queryLocator and each record (Id and fields)."""
    call = _soap_call(request)
    if call is None:
        return None
    operation, arguments, soap_headers = call
    lines = PYTHON.header(request, "Python, zeep", extra=[
        "The partner WSDL: the one in /flow/starter.zip, or your org's (Setup > API > Generate",
        "Partner WSDL); SF_PARTNER_WSDL names its path."])
    lines += ["import os", "", "import zeep", "",
              'client = zeep.Client(os.environ.get("SF_PARTNER_WSDL", "partner.wsdl"))',
              f"service = client.create_service({PYTHON.literal(PARTNER_BINDING)},",
              f"                                {PYTHON.literal(request.url)})"]
    headers: list[tuple[str, str]] = [
        ("SessionHeader", '{"sessionId": os.environ["SF_ACCESS_TOKEN"]}')]
    headers += [(name, json.dumps({k: int(v) if v.isdigit() else v for k, v in values.items()},
                                  ensure_ascii=False))
                for name, values in soap_headers.items()]
    header_text = "".join(f"    {json.dumps(n)}: {v},\n" for n, v in headers)
    kwargs = "".join(f"    {name}={PYTHON.literal(value)},\n" for name, value in arguments.items())
    lines.append(f"response = service.{operation}(\n{kwargs}    _soapheaders={{\n"
                 + "".join(f"    {line}\n" for line in header_text.splitlines())
                 + "    },\n)")
    # The partner WSDL's replies carry SOAP headers (LimitInfoHeader): zeep answers header, body.
    lines.append("result = response.body.result")
    if operation in ("query", "queryAll", "queryMore"):
        lines += ["print(result.size, result.done, result.queryLocator)",
                  "for record in result.records or []:",
                  "    fields = {field.tag.split(\"}\")[-1]: field.text "
                  "for field in record._value_1 or []}",
                  "    print(record.type, record.Id, fields)"]
    else:
        lines.append("print(result)")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------- JavaScript

def javascript_fetch(request: Request) -> str:
    """The request with fetch (Node 18+, as an ES module: save as .mjs): prints the status,
    then the body."""
    lines = JAVASCRIPT.header(request, "JavaScript, fetch; Node 18+, save as snippet.mjs")
    if request.authorize:
        lines += ['import { createHash } from "node:crypto";', "",
                  "process.env.SF_CODE_CHALLENGE = createHash(\"sha256\")"
                  ".update(process.env.SF_CODE_VERIFIER).digest(\"base64url\");"]
    lines.append(f"const url = new URL({JAVASCRIPT.literal(request.url)});")
    if request.query:
        lines.append(f"url.search = new URLSearchParams({_dict(JAVASCRIPT, request.query, '')});")
    options = [f"  method: {JAVASCRIPT.literal(request.method)},"]
    if request.headers:
        options.append(f"  headers: {_dict(JAVASCRIPT, request.headers, '  ')},")
    if request.form is not None:
        options.append(f"  body: new URLSearchParams({_dict(JAVASCRIPT, request.form, '  ')}),")
    elif request.body is not None:
        options.append(f"  body: {JAVASCRIPT.value(request.body)},")
    options.append('  redirect: "manual",')
    lines.append("const response = await fetch(url, {\n" + "\n".join(options) + "\n});")
    lines.append("console.log(response.status);")
    if request.authorize:
        lines.append('console.log("Open in a browser:", url.href);')
    else:
        lines.append("console.log(await response.text());")
    return "\n".join(lines) + "\n"


def javascript_jsforce(request: Request) -> str | None:
    """The same call through jsforce 3, where jsforce has it: the token request, the refresh,
    the revoke, the identity request and the REST query."""
    parts = urlsplit(request.url)
    origin = f"{parts.scheme}://{parts.netloc}"
    form = dict(request.form or ())
    js = JAVASCRIPT
    oauth2 = ("const oauth2 = new jsforce.OAuth2({\n"
              f"  loginUrl: {js.literal(origin)},\n"
              + (f"  clientId: {js.value(form['client_id'])},\n" if "client_id" in form else "")
              + ("  clientSecret: process.env.SF_CLIENT_SECRET,\n"
                 if "client_secret" in form else "")
              + (f"  redirectUri: {js.value(form['redirect_uri'])},\n"
                 if "redirect_uri" in form else "")
              + "});")
    grant = "".join(p for p in form.get("grant_type", ()) if isinstance(p, str))
    if parts.path.endswith("/services/oauth2/token") and grant == "authorization_code":
        body = [oauth2]
        if "code_verifier" in form:
            body.append("oauth2.codeVerifier = process.env.SF_CODE_VERIFIER;  // sent as "
                        "code_verifier")
        body.append("const answer = await oauth2.requestToken(process.env.SF_CODE);")
        body.append("console.log(JSON.stringify(answer, null, 2));")
    elif parts.path.endswith("/services/oauth2/token") and grant == "refresh_token":
        body = [oauth2, "const answer = await oauth2.refreshToken(process.env.SF_REFRESH_TOKEN);",
                "console.log(JSON.stringify(answer, null, 2));"]
    elif parts.path.endswith("/services/oauth2/revoke") and "token" in form:
        body = [oauth2, f"await oauth2.revokeToken({js.value(form['token'])});",
                'console.log("revoked");']
    elif "/services/data/" in parts.path and "/query" in parts.path:
        version = re.search(r"/services/data/v(\d+\.\d)", parts.path)
        query = dict(request.query)
        connection = ("const conn = new jsforce.Connection({\n"
                      f"  instanceUrl: {js.literal(origin)},\n"
                      "  accessToken: process.env.SF_ACCESS_TOKEN,\n"
                      + (f"  version: {js.literal(version.group(1))},\n" if version else "")
                      + "});")
        if "q" in query:
            call = f"await conn.query({js.value(query['q'])})"
        elif re.search(r"/query(All)?/[^/]+$", parts.path):
            call = f"await conn.queryMore({js.literal(parts.path)})"
        else:
            return None
        body = [connection, f"const result = {call};",
                "console.log(JSON.stringify(result, null, 2));"]
    elif request.step == "identity request" and parts.path.startswith("/id/") \
            and request.method == "GET" and not parts.path.endswith("/id/keys"):
        body = ["const conn = new jsforce.Connection({\n"
                f"  instanceUrl: {js.literal(origin)},\n"
                "  accessToken: process.env.SF_ACCESS_TOKEN,\n});",
                f"const identity = await conn.request({js.literal(request.url)});",
                "console.log(JSON.stringify(identity, null, 2));"]
    else:
        return None
    lines = js.header(request, "JavaScript, jsforce 3; npm install jsforce, save as "
                      "snippet.mjs")
    return "\n".join([*lines, 'import jsforce from "jsforce";', "", *body]) + "\n"


# -------------------------------------------------------------------------------- entries

def snippets_for(entry: Mapping[str, object], seq: int | None = None) -> list[Snippet]:
    """Every way to copy the exchange of `entry` (number `seq` on /flow), or [] when it has
    none."""
    request = request_of(entry, int(seq or entry.get("seq") or 0))
    if request is None:
        return []
    found = [Snippet("curl", "curl", curl(request)),
             Snippet("python", "Python (requests)", python_requests(request))]
    zeep_code = python_zeep(request) if "/services/Soap/" in request.url else None
    if zeep_code:
        found.append(Snippet("zeep", "Python (zeep, partner WSDL)", zeep_code))
    found.append(Snippet("javascript", "JavaScript (fetch)", javascript_fetch(request)))
    jsforce_code = javascript_jsforce(request)
    if jsforce_code:
        found.append(Snippet("jsforce", "JavaScript (jsforce)", jsforce_code))
    return found
