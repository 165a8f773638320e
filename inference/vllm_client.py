"""The calls the node makes to vLLM: chat (proxied, whole or streamed), load and unload of LoRA adapters."""

from __future__ import annotations

import logging
from typing import Any

import httpx

from schemas.errors import AdapterError

__all__ = ["VllmClient"]

_log = logging.getLogger(__name__)


class VllmClient:
    """Async client of one vLLM OpenAI-compatible server with runtime LoRA updating on."""

    def __init__(
        self,
        base_url: str,
        *,
        request_timeout_s: float,
        admin_timeout_s: float,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        # One pooled client: keep-alive connections are most of what keeps the proxy overhead small.
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            headers=headers or {},  # vLLM's API key (ContractSettings.vllm_headers)
            timeout=httpx.Timeout(request_timeout_s, connect=10.0),
            limits=httpx.Limits(max_connections=256, max_keepalive_connections=64),
        )
        self._admin_timeout = admin_timeout_s

    async def chat(self, body: dict[str, Any]) -> httpx.Response:
        return await self._http.post("/v1/chat/completions", json=body)

    async def chat_stream(self, body: dict[str, Any]) -> httpx.Response:
        """POST a ``stream: true`` chat body; returns once the status and headers are in.

        The body is left unread: the caller iterates it and must ``aclose()`` the response, which
        closes the connection when the stream is not finished (vLLM then aborts the request).
        """
        request = self._http.build_request("POST", "/v1/chat/completions", json=body)
        return await self._http.send(request, stream=True)

    async def models(self) -> list[str]:
        resp = await self._http.get("/v1/models", timeout=self._admin_timeout)
        resp.raise_for_status()
        return [m["id"] for m in resp.json()["data"]]

    async def load(self, name: str, path: str) -> bool:
        """Load ``path`` as ``name``; False when vLLM already had that name (same immutable version)."""
        try:
            resp = await self._http.post(
                "/v1/load_lora_adapter", json={"lora_name": name, "lora_path": path}, timeout=self._admin_timeout
            )
        except httpx.HTTPError as exc:
            raise AdapterError(f"vLLM did not answer the load of {name}: {exc!r}") from None
        if resp.status_code == 200:
            return True
        if resp.status_code == 400 and "already been loaded" in resp.text:
            # Names are versioned and versions immutable: another node sharing this vLLM loaded it.
            return False
        raise AdapterError(f"vLLM refused to load {name} ({resp.status_code}): {resp.text[:500]}")

    async def unload(self, name: str) -> None:
        """Unload ``name``; a name vLLM does not know is already unloaded."""
        try:
            resp = await self._http.post(
                "/v1/unload_lora_adapter", json={"lora_name": name}, timeout=self._admin_timeout
            )
        except httpx.HTTPError as exc:
            raise AdapterError(f"vLLM did not answer the unload of {name}: {exc!r}") from None
        if resp.status_code not in (200, 404):
            raise AdapterError(f"vLLM refused to unload {name} ({resp.status_code}): {resp.text[:500]}")

    async def aclose(self) -> None:
        await self._http.aclose()
