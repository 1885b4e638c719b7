"""Downloads through an HTTP proxy (``HTTP_PROXY``/``HTTPS_PROXY``/``NO_PROXY``).

The Hub is reached under a name that does not resolve (``.invalid``) and that only the proxy
knows: a client that went around the proxy could not connect at all (as
test_no_network_fails_fast_with_a_source_error shows for the same name).
"""

from __future__ import annotations

import datetime
import ssl
import urllib.parse
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType

import pytest

from tests.helpers import SYNTH_ID
from tests.hfrepo import add_synth_repo, expected_files, hf_store
from tests.hubserver import HubServer
from tests.netproxy import ForwardProxy
from wan_desktop.models.config import OrchestratorConfig
from wan_desktop.models.sources.http import HttpClient, Origin
from wan_desktop.models.store import ModelStore

HOST = "hub.wan-test.invalid"
TOKEN = "hf_proxytesttoken0123456789"


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for ``HOST`` and its key, as PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOST)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(HOST)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_path, key_path = folder / "hub.pem", folder / "hub.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def proxied_store(
    tmp_path: Path, hub: HubServer, proxies: dict[str, str], token: str | None = None
) -> ModelStore:
    store = hf_store(tmp_path, hub, token=token)
    store.config = replace(store.config, proxies=MappingProxyType(proxies))
    return store


def resolved_paths(targets: list[str]) -> set[str]:
    """The repository paths of the file downloads among proxied request targets."""
    out = set()
    for t in targets:
        path = urllib.parse.unquote(urllib.parse.urlsplit(t).path)
        if "/resolve/" in path:
            out.add(path.split("/resolve/", 1)[1].split("/", 1)[1])
    return out


@pytest.fixture
def hub_by_name() -> Iterator[HubServer]:
    with HubServer() as hub:
        hub.url = f"http://{HOST}:{hub.port}"
        yield hub


def test_plain_http_goes_through_the_proxy(tmp_path: Path, hub_by_name: HubServer) -> None:
    hub = hub_by_name
    repo = add_synth_repo(hub)
    with ForwardProxy({HOST: hub.port}) as proxy:
        store = proxied_store(tmp_path, hub, {"http": proxy.endpoint})
        store.ensure(SYNTH_ID)
        assert store.verify(SYNTH_ID).ok
    targets = [r.target for r in proxy.log]
    assert all(t.startswith(f"http://{HOST}:{hub.port}/") for t in targets), targets
    # The file list and every file's bytes came through it.
    assert any("/api/models/" in t for t in targets)
    assert resolved_paths(targets) >= expected_files(repo)


def test_https_goes_through_a_connect_tunnel_that_never_sees_the_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, certificate: tuple[Path, Path]
) -> None:
    cert, key = certificate
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(cert, key)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # the client trusts the test's certificate
    with HubServer(tls=server_tls) as hub, ForwardProxy({HOST: hub.port}) as proxy:
        hub.url = f"https://{HOST}:{hub.port}"
        hub.tokens.add(TOKEN)
        add_synth_repo(hub, private=True)  # no bytes without the token
        store = proxied_store(tmp_path, hub, {"https": proxy.endpoint}, token=TOKEN)
        store.ensure(SYNTH_ID)
        assert store.verify(SYNTH_ID).ok
        assert any(r.authorized for r in hub.body_requests()), "the token reached the Hub"
    assert proxy.log, "the proxy was used"
    assert {(r.method, r.target) for r in proxy.log} == {("CONNECT", f"{HOST}:{hub.port}")}
    assert all(r.authorization is None for r in proxy.log)


def test_proxy_settings_come_from_the_environment_and_no_proxy_is_honoured() -> None:
    cfg = OrchestratorConfig.from_env(
        {
            "HTTPS_PROXY": "http://proxy.example:3128",
            "http_proxy": "http://plain.example:8080",
            "NO_PROXY": "mirror.example, .internal.example",
        }
    )
    assert dict(cfg.proxies) == {
        "https": "http://proxy.example:3128",
        "http": "http://plain.example:8080",
    }
    client = HttpClient(
        user_agent="t", read_timeout_s=1, proxies=cfg.proxies, no_proxy=cfg.no_proxy
    )
    assert client._proxy_for(Origin("https", "huggingface.co", 443)) == cfg.proxies["https"]
    assert client._proxy_for(Origin("http", "example.org", 80)) == cfg.proxies["http"]
    for host in ("mirror.example", "cdn.internal.example", "127.0.0.1", "localhost"):
        assert client._proxy_for(Origin("https", host, 443)) is None, host
