"""`hf:OWNER/REPO/FILE` weight sources: a cached or freshly downloaded Hugging Face Hub file.

    load_depth_anything("hf:depth-anything/Depth-Anything-V2-Small/depth_anything_v2_vits.pth")

A file already in the local Hub cache is used without any network access. Otherwise the Hub
endpoint (`HF_ENDPOINT`, default https://huggingface.co) is probed once with a short TCP
connect (to the proxy, when `HTTPS_PROXY` & co. route it through one) before downloading, so
an offline machine fails in seconds with one line instead of huggingface_hub's ~30 s of
retries. `HF_HUB_OFFLINE=1` never touches the network.
"""

from __future__ import annotations

import os
import socket
import urllib.parse
import urllib.request

PREFIX = "hf:"
PROBE_TIMEOUT_S = 3.0
_TRUE = {"1", "ON", "YES", "TRUE"}


class WeightsSourceError(ValueError):
    """An `hf:` weight source cannot be resolved to a local file."""


def parse_spec(spec: str) -> tuple[str, str]:
    """`hf:OWNER/REPO/PATH/IN/REPO` -> (`OWNER/REPO`, `PATH/IN/REPO`)."""
    parts = spec[len(PREFIX) :].strip("/").split("/")
    if len(parts) < 3 or not all(parts):
        raise WeightsSourceError(f"{spec}: expected hf:OWNER/REPO/FILE")
    if any(part in (".", "..") for part in parts):
        raise WeightsSourceError(f"{spec}: '.' and '..' are not allowed in hf:OWNER/REPO/FILE")
    return "/".join(parts[:2]), "/".join(parts[2:])


def _unreachable(endpoint: str) -> str | None:
    """Why `endpoint` (or the proxy that the environment routes it through) cannot be reached;
    None when a TCP connection opens."""
    url, via = urllib.parse.urlsplit(endpoint), ""
    proxy = urllib.request.getproxies().get(url.scheme)
    if proxy and not urllib.request.proxy_bypass(url.hostname or ""):
        url = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        via = f"via proxy {proxy}: "
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname, port), timeout=PROBE_TIMEOUT_S):
            return None
    except OSError as e:
        return via + (e.strerror or type(e).__name__)


def resolve_weights(spec: str) -> str:
    """A local path for a weights argument: `spec` itself, or the downloaded `hf:` file.

    Raises:
      WeightsSourceError: one line naming the source, when huggingface_hub is missing, the
        file is not cached and the Hub is offline or unreachable, or the download fails.
    """
    if not spec.startswith(PREFIX):
        return spec
    repo, filename = parse_spec(spec)
    try:
        from huggingface_hub import constants, hf_hub_download
        from huggingface_hub.errors import LocalEntryNotFoundError
    except ImportError:
        raise WeightsSourceError(f"{spec}: needs `pip install huggingface_hub`") from None
    try:
        return hf_hub_download(repo, filename, local_files_only=True)
    except LocalEntryNotFoundError:
        pass  # not cached: try the network below
    except Exception as e:  # noqa: BLE001 - HFValidationError, a bad file name: one line
        raise WeightsSourceError(f"{spec}: {_first_line(e)}") from None
    advice = f"download {filename} from https://huggingface.co/{repo} elsewhere and pass the file"
    if os.environ.get("HF_HUB_OFFLINE", "").upper() in _TRUE:
        raise WeightsSourceError(
            f"{spec}: not in the local Hub cache and HF_HUB_OFFLINE is set; {advice}"
        )
    endpoint = os.environ.get("HF_ENDPOINT") or constants.ENDPOINT
    reason = _unreachable(endpoint)
    if reason is not None:
        raise WeightsSourceError(f"{spec}: cannot reach {endpoint} ({reason}); {advice}")
    try:
        return hf_hub_download(repo, filename, endpoint=endpoint)
    except Exception as e:  # noqa: BLE001 - any Hub failure becomes one line
        raise WeightsSourceError(
            f"{spec}: download failed ({type(e).__name__}: {_first_line(e)})"
        ) from None


def _first_line(error: Exception) -> str:
    """The first line of an exception's message ('' when it has none)."""
    text = str(error).strip()
    return text.splitlines()[0] if text else ""
