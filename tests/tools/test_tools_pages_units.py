"""The page tools without a browser: which URLs may be opened, the kinds the schemas list,
bad --allow-host / --max-pages options."""

from __future__ import annotations

import pytest

from som.tools.pages import UrlNotAllowed, UrlPolicy
from som.tools.roots import Roots


@pytest.fixture
def root(tmp_path):
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "page.html").write_text("<p>hi</p>")
    (tmp_path / "secret.html").write_text("<p>no</p>")
    return tmp_path / "site"


@pytest.mark.parametrize(
    "hosts, url, ok",
    [
        ((), "https://example.org/a?b=1", True),
        ((), "http://10.0.0.1:8080/", True),
        (("example.org",), "https://example.org/x", True),
        (("example.org",), "https://EXAMPLE.org./x", True),
        (("example.org",), "https://www.example.org/x", False),
        (("example.org",), "https://example.org.evil.net/", False),
        (("example.org",), "https://evil.net/?example.org", False),
        (("*.example.org",), "https://www.example.org/x", True),
        (("*.example.org",), "https://example.org/x", True),
        (("*.example.org",), "https://badexample.org/", False),
        (("127.0.0.1:8000",), "http://127.0.0.1:8000/", True),
        (("127.0.0.1:8000",), "http://127.0.0.1:8001/", False),
        (("127.0.0.1",), "http://localhost/", False),
        (("localhost:443",), "https://localhost/", True),
        (("[::1]:80",), "http://[::1]/", True),
    ],
)
def test_http_urls_only_of_allowed_hosts(hosts, url, ok, root):
    policy = UrlPolicy(hosts, Roots([root]))
    if ok:
        assert policy.check(url) == url
    else:
        with pytest.raises(UrlNotAllowed, match="is not allowed .allowed: .*--allow-host"):
            policy.check(url)


def test_file_urls_only_under_the_roots_and_no_other_schemes(root):
    policy = UrlPolicy((), Roots([root]))
    page = (root / "page.html").resolve().as_uri()
    assert policy.check(page) == page
    assert policy.check("page.html") == page  # a path relative to a root
    assert policy.check(str(root / "page.html")) == page
    for outside in ((root.parent / "secret.html").as_uri(), "../secret.html", "file:///etc/passwd"):
        with pytest.raises(UrlNotAllowed, match="outside the allowed roots"):
            policy.check(outside)
    with pytest.raises(UrlNotAllowed, match="another machine"):
        policy.check("file://server/share/page.html")
    with pytest.raises(ValueError, match="no such file under the allowed roots"):
        policy.check((root / "missing.html").as_uri())
    with pytest.raises(ValueError, match="neither an http.s./file URL nor a file"):
        policy.check("example.org")
    for url in ("data:text/html,<p>x", "javascript:alert(1)", "chrome://settings", "ftp://example.org/"):
        with pytest.raises(UrlNotAllowed, match="only http, https and file URLs"):
            policy.check(url)
    assert policy.allows_loaded("about:blank") and not policy.allows_loaded("chrome://version")


def test_the_schemas_kinds_are_what_screen_and_web_mark():
    from som.screen.marks import SCREEN_KINDS
    from som.tools import schemas
    from som.web.page import KINDS

    assert schemas.SCREEN_KINDS == SCREEN_KINDS
    assert schemas.PAGE_KINDS == tuple(k for k in KINDS if k != "vision")


@pytest.mark.parametrize(
    "argv, message",
    [
        (["mcp", "--allow-host", "http://example.org/"], "--allow-host takes a host name"),
        (["mcp", "--allow-host", "example.org:http"], "bad port"),
        (["mcp", "--max-pages", "0"], "max pages must be >= 1"),
    ],
)
def test_som_mcp_refuses_bad_page_options_in_one_line(argv, message, capsys):
    from som.cli import main

    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("som: error: ") and message in err and err.count("\n") == 1
