"""The stack's S3 endpoint (moto's server, or one given): its bucket, its keys, the demo batches on it."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from model_factory_dev.stack.config import StackError


def moto_api(endpoint: str, path: str, body: bytes = b"") -> Any:
    """POST to moto's control API (``/moto-api/...``) and return the JSON answer.

    The body goes as text/plain: with urllib's default form content type Flask moves it to
    ``request.form`` and moto's ``reset-auth`` would see an empty body.
    """
    request = urllib.request.Request(
        f"{endpoint}/moto-api/{path}",
        data=body,
        method="POST",
        headers={"Content-Type": "text/plain"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        text = response.read().decode()
    return json.loads(text) if text else {}


class StackS3:
    """Part of Stack: what it does on its S3 endpoint (``self.s3_endpoint``, ``self.bucket``)."""

    def _aws_client(self, service: str, key: str | None = None, secret: str | None = None) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.session.Session().client(
            service,
            endpoint_url=self.s3_endpoint,
            aws_access_key_id=key or self.config.aws_access_key_id,
            aws_secret_access_key=secret or self.config.aws_secret_access_key,
            region_name=self.config.aws_region,
            config=Config(retries={"max_attempts": 2}, connect_timeout=5, read_timeout=30),
        )

    def _create_bucket(self) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        s3 = self._aws_client("s3")
        try:
            s3.create_bucket(Bucket=self.bucket)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code"))
            if code in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                return
            if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "403"):
                raise StackError(
                    f"S3 at {self.s3_endpoint} refused the stack's credentials ({code}) for bucket "
                    f"{self.bucket!r}: check aws_access_key_id/aws_secret_access_key "
                    f"(key id {self.config.aws_access_key_id[:4]}...) and the bucket policy"
                ) from exc
            raise StackError(
                f"cannot create bucket {self.bucket!r} on {self.s3_endpoint}: {code}: {exc}"
            ) from exc
        except BotoCoreError as exc:
            raise StackError(f"S3 endpoint {self.s3_endpoint} is not reachable: {exc}") from exc

    def _enable_s3_auth(self) -> None:
        """moto: an IAM user allowed only this bucket; every component uses its keys from now on."""
        iam = self._aws_client("iam")
        user = "factory"
        iam.create_user(UserName=user)
        iam.put_user_policy(
            UserName=user,
            PolicyName="factory-bucket",
            PolicyDocument=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Action": "s3:*",
                            "Resource": [f"arn:aws:s3:::{self.bucket}", f"arn:aws:s3:::{self.bucket}/*"],
                        }
                    ],
                }
            ),
        )
        key = iam.create_access_key(UserName=user)["AccessKey"]
        self.env["AWS_ACCESS_KEY_ID"] = key["AccessKeyId"]
        self.env["AWS_SECRET_ACCESS_KEY"] = key["SecretAccessKey"]
        self._moto_api("reset-auth", b"0")  # from now on moto checks keys and policies

    def _moto_api(self, path: str, body: bytes = b"") -> Any:
        return moto_api(self.s3_endpoint, path, body)

    def upload_demo_data(
        self,
        start: Any,
        days: int,
        rows: int = 2000,
        faults: dict | None = None,
        models: Iterable[str] | None = None,
        fmt: str = "csv",
    ) -> list[str]:
        """Write the demo generator's batches under FACTORY_DATA_ROOT (S3 or file); return URIs."""
        import tempfile

        from model_factory.io import storage

        from model_factory_dev import demo_data

        wanted = set(models or demo_data.MODELS)
        uris = []
        with tempfile.TemporaryDirectory() as tmp, self.environ():
            for path in demo_data.write_demo_batches(
                tmp, start, days, rows=rows, faults=faults or {}, fmt=fmt
            ):
                path = Path(path)
                model = path.parent.name
                if model not in wanted:
                    continue
                uri = storage.join(self.data_root, model, path.name)
                storage.upload_file(path, uri)
                uris.append(uri)
        return uris
