"""A real S3-compatible server: MinIO, built once from the Go module proxy into the user cache."""

from __future__ import annotations

import contextlib
import os
import shutil
import urllib.error
import urllib.request
from pathlib import Path

from devstack.process import ManagedProcess, run_checked
from devstack.settings import MINIO_MODULE, StackSettings
from schemas.errors import StackError
from schemas.storage import ensure_bucket, s3_client

__all__ = ["MinioServer"]


class MinioServer:
    name = "s3"

    def __init__(self, settings: StackSettings) -> None:
        self.s = settings
        self.proc = ManagedProcess(self.name, settings.state_dir)
        self.data_dir = settings.state_dir / "data" / "minio"

    @property
    def binary(self) -> Path:
        version = MINIO_MODULE.rsplit("@", 1)[1]
        return self.s.cache_dir / f"minio-{version}" / "bin" / "minio"

    def ensure_installed(self) -> None:
        """``go install`` MinIO at the pinned version (~3 min on 2 cores, once per user)."""
        if self.binary.exists():
            return
        if shutil.which("go") is None:
            raise StackError("Go is needed to build MinIO from the Go module proxy", component=self.name)
        gobin = self.binary.parent
        tmp_bin = gobin.with_name("bin.partial")
        shutil.rmtree(tmp_bin, ignore_errors=True)
        tmp_bin.mkdir(parents=True)
        env = {
            "GOBIN": str(tmp_bin.resolve()),
            "GOPATH": str((self.s.cache_dir / "go").resolve()),
            "GOFLAGS": "-modcacherw",
            "CGO_ENABLED": "0",
        }
        run_checked(["go", "install", MINIO_MODULE], log=self.proc.log_file, env=env)
        shutil.rmtree(gobin, ignore_errors=True)
        tmp_bin.rename(gobin)

    def start(self) -> None:
        self.ensure_installed()
        access_key, secret_key = self.s.s3_credentials()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        host_port = self.s.s3_endpoint.split("://", 1)[1].rstrip("/")
        host = host_port.rsplit(":", 1)[0]
        self.proc.start(
            [
                str(self.binary),
                "server",
                str(self.data_dir.resolve()),
                "--quiet",
                "--address",
                host_port,
                "--console-address",
                f"{host}:{self.s.minio_console_port}",
            ],
            env={
                "MINIO_ROOT_USER": access_key,
                "MINIO_ROOT_PASSWORD": secret_key,
                "MINIO_BROWSER": "off",
                "MINIO_UPDATE": "off",
                "HOME": os.environ.get("HOME", "/tmp"),
            },
        )

    def healthy(self) -> tuple[bool, str]:
        try:
            with urllib.request.urlopen(f"{self.s.s3_endpoint}/minio/health/live", timeout=2) as resp:
                if resp.status != 200:
                    return False, f"health answered {resp.status}"
        except (urllib.error.URLError, OSError) as exc:
            return False, f"no answer: {exc}"
        try:
            s3_client(self.s).head_bucket(Bucket=self.s.s3_bucket)
        except Exception as exc:
            return False, f"bucket {self.s.s3_bucket!r} not reachable: {exc}"
        return True, f"bucket {self.s.s3_bucket!r} ready"

    def prepare(self) -> None:
        """Create the bucket once the server answers (idempotent)."""
        from botocore.exceptions import BotoCoreError, ClientError

        with contextlib.suppress(BotoCoreError, ClientError):  # not answering yet: the wait loop retries
            ensure_bucket(self.s)
