#!/usr/bin/env python3
"""Check a deployment (a Cloud.ru Docker RUN or any URL) end to end, print a summary and write a JSON report.

Usage: .venv-client/bin/python scripts/check_deployment.py [--url URL] [--env-file .env] [--report report.json]
       .venv-client/bin/python scripts/check_deployment.py --vlm-url URL [--vlm-model NAME]   (the VLM server alone)

Reads (environment first, then .env): CLOUD_RU_INFERENCE_URL (the Docker RUN's address,
https://<docker_run_id>.modelrun.inference.cloud.ru); CLOUD_RU_IAM_KEY_ID + CLOUD_RU_IAM_SECRET
(exchanged at CLOUD_RU_IAM_URL for an IAM token) or a ready CLOUD_RU_TOKEN; SERVICE_API_KEY when the
service's own API_KEY is on (sent as X-API-Key, beside the platform's Authorization: Bearer).

Steps: config, reachability (and which auth layer answers 401 without credentials), token, authenticated
request (/version), /health, /ready, OCR of a bundled sample page (text checked by character error rate),
a job round trip (POST /jobs, poll, result), /health latency. Exit code 0 only when no step failed.

With --vlm-url it checks the OpenAI-compatible VLM server that the service's VL_SERVER_URL points at (e.g. a vLLM
Model RUN serving PaddlePaddle/PaddleOCR-VL), with the same credentials: config, token, models (GET /models: the
model to name, VL_MODEL_NAME), one completion of the sample page (``OCR:``, text checked by CER), and the latency
of a few more (--vlm-samples).
"""

from __future__ import annotations

import argparse
import base64
import json
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.client.api import DeploymentClient, DeploymentError, Interrupted, RetryPolicy, describe  # noqa: E402
from app.client.auth import (  # noqa: E402
    AuthError,
    IamTokenSource,
    ServiceAuth,
    TokenSource,
    service_auth,
    token_source,
)
from app.client.settings import ClientSettings, load_settings, mask  # noqa: E402

SAMPLE_PAGE = ROOT / "scripts" / "assets" / "sample_page.png"
SAMPLE_TEXT = "\n".join(
    [
        "Deployment check: sample page",
        "Invoice 2024-117 was paid on the third of May.",
        "Total amount due: 1,234.56 EUR including tax.",
        "The quick brown fox jumps over the lazy dog.",
    ]
)


class StepFailed(Exception):
    """A check did not pass; the message says why and what to do."""


class StepSkipped(Exception):
    """A check that does not apply to this deployment; the message says why."""


def cer(expected: str, actual: str) -> float:
    """Character error rate (Levenshtein distance / length) on whitespace-normalised text."""
    a, b = " ".join(expected.split()), " ".join(actual.split())
    previous = list(range(len(b) + 1))
    for i, char_a in enumerate(a, 1):
        current = [i]
        for j, char_b in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (char_a != char_b)))
        previous = current
    return previous[-1] / max(1, len(a))


@dataclass
class Step:
    name: str
    status: str = "skip"  # pass | fail | skip
    message: str = ""
    ms: float | None = None
    details: dict[str, Any] = field(default_factory=dict)


class Checks:
    """Runs steps in order; a failed step that later ones depend on skips them."""

    def __init__(self, settings: ClientSettings, args: argparse.Namespace) -> None:
        self.settings = settings
        self.args = args
        self.steps: list[Step] = []
        self.blocked_by: str | None = None
        self.tokens: TokenSource = TokenSource()

    def step(self, name: str, check: Callable[[Step], str], blocking: bool = False) -> None:
        step = Step(name)
        self.steps.append(step)
        if self.blocked_by is not None:
            step.message = f"skipped: step '{self.blocked_by}' failed"
            return
        started = time.perf_counter()
        try:
            step.message = check(step)
            step.status = "pass"
        except StepSkipped as exc:
            step.status, step.message = "skip", str(exc)
        except (StepFailed, AuthError, DeploymentError) as exc:
            step.status, step.message = "fail", str(exc)
        except (httpx.HTTPError, Interrupted) as exc:
            step.status, step.message = "fail", f"{type(exc).__name__}: {exc}"
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            step.status, step.message = "fail", f"unexpected answer: {type(exc).__name__}: {exc}"
        step.ms = step.ms if step.ms is not None else round((time.perf_counter() - started) * 1000, 1)
        if step.status == "fail" and blocking:
            self.blocked_by = name

    def config_details(self) -> dict[str, Any]:
        s = self.settings
        return {
            "CLOUD_RU_IAM_URL": s.cloud_ru_iam_url,
            "CLOUD_RU_IAM_KEY_ID": mask(s.cloud_ru_iam_key_id, keep=4),
            "CLOUD_RU_IAM_SECRET": mask(s.cloud_ru_iam_secret),
            "CLOUD_RU_TOKEN": mask(s.cloud_ru_token),
            "SERVICE_API_KEY": mask(s.service_api_key),
            "auth_mode": s.auth_mode,
        }

    def exchange_token(self, step: Step) -> str:
        """The IAM exchange (the step after config): its lifetime, or why not."""
        self.tokens.token()
        expires_in = self.tokens.expires_in if isinstance(self.tokens, IamTokenSource) else None
        step.details = {"iam_url": self.settings.cloud_ru_iam_url, "expires_in": expires_in}
        return f"IAM token issued by {self.settings.cloud_ru_iam_url}, valid {expires_in:.0f} s"


class DeploymentCheck(Checks):
    """The service end to end (see the module docstring)."""

    def __init__(self, settings: ClientSettings, args: argparse.Namespace) -> None:
        super().__init__(settings, args)
        self.url = settings.cloud_ru_inference_url.rstrip("/")
        self.client: DeploymentClient | None = None
        self.unauthenticated: dict[str, int] = {}

    # --- running ---------------------------------------------------------------------------------
    def run(self) -> list[Step]:
        self.step("config", self.check_config, blocking=True)
        self.step("reachability", self.check_reachability, blocking=True)
        self.tokens = token_source(self.settings, timeout=self.args.timeout)
        policy = RetryPolicy(attempts=4, max_wait_s=10)
        self.client = DeploymentClient(
            self.url or "http://invalid",
            service_auth(self.settings, self.tokens),
            policy=policy,
            timeout=self.args.timeout,
        )
        try:
            self.step("token", self.check_token, blocking=True)
            self.step("authenticated", self.check_authenticated, blocking=True)
            self.step("health", self.check_health)
            self.step("ready", self.check_ready, blocking=True)
            self.step("ocr", self.check_ocr)
            self.step("job", self.check_job)
            self.step("latency", self.check_latency)
        finally:
            self.client.close()
        return self.steps

    @property
    def http(self) -> httpx.Client:
        assert self.client is not None
        return self.client.http

    # --- steps -----------------------------------------------------------------------------------
    def check_config(self, step: Step) -> str:
        s = self.settings
        step.details = {"CLOUD_RU_INFERENCE_URL": s.cloud_ru_inference_url or "(not set)", **self.config_details()}
        problems = s.problems()
        if problems:
            raise StepFailed("; ".join(problems))
        modes = {
            "iam": "IAM key pair",
            "token": "ready IAM token or API key (CLOUD_RU_TOKEN)",
            "none": "no platform token",
        }
        note = " (CLOUD_RU_TOKEN ignored: the key pair wins)" if s.auth_mode == "iam" and s.cloud_ru_token else ""
        key = "X-API-Key from SERVICE_API_KEY" if s.service_api_key else "no service key"
        return f"{self.url}; {modes[s.auth_mode]}{note}; {key}"

    def check_reachability(self, step: Step) -> str:
        """Without credentials: /health is open in the service, so a 401 there comes from the platform;
        /version is closed by the service's API_KEY."""
        timeout = httpx.Timeout(self.args.timeout, connect=min(self.args.timeout, 15.0))
        with httpx.Client(base_url=self.url, timeout=timeout) as bare:
            for path in ("/health", "/version"):
                self.unauthenticated[path] = bare.get(path).status_code
        health, version = self.unauthenticated["/health"], self.unauthenticated["/version"]
        platform = health in (401, 403)
        service = None if platform else version in (401, 403)
        step.details = {
            "without_credentials": dict(self.unauthenticated),
            "platform_auth": platform,
            "service_api_key": service,
        }
        if platform:
            return f"reachable; auth required by the platform (HTTP {health} without a token)"
        if service:
            return f"reachable; the platform lets anyone in, the service's API_KEY is on (HTTP {version})"
        return f"reachable; no authentication at all (HTTP {health} on /health, {version} on /version)"

    def check_token(self, step: Step) -> str:
        mode = self.settings.auth_mode
        if mode == "none":
            if self.unauthenticated.get("/health") in (401, 403):
                raise StepFailed(
                    "the platform requires a token: set CLOUD_RU_IAM_KEY_ID + CLOUD_RU_IAM_SECRET or CLOUD_RU_TOKEN"
                )
            raise StepSkipped("no platform credentials configured, and none required")
        if mode == "token":
            return "using CLOUD_RU_TOKEN as is (it is not refreshed: expect 401 once it expires)"
        return self.exchange_token(step)

    def check_authenticated(self, step: Step) -> str:
        response = self.http.get("/version")
        step.details = {"status": response.status_code}
        if response.status_code in (401, 403):
            raise StepFailed(
                f"the deployment refused the credentials ({describe(response)}): {self._auth_hint(response)}"
            )
        if response.status_code != 200:
            raise StepFailed(f"GET /version: {describe(response)}")
        body = response.json()
        step.details.update(service=body.get("service"), engine=body.get("engine"))
        engine = body.get("engine") or {}
        return f"service {body.get('service')}, engine {engine.get('name')} on {engine.get('device')}"

    def _auth_hint(self, response: httpx.Response) -> str:
        try:
            from_service = response.json()["error"]["code"] == "unauthorized"
        except (ValueError, KeyError, TypeError):
            from_service = False
        if from_service:
            return "the service's own API_KEY check answered: set SERVICE_API_KEY to the service's API_KEY"
        return (
            "the platform refused the token: check CLOUD_RU_IAM_KEY_ID/CLOUD_RU_IAM_SECRET (or CLOUD_RU_TOKEN, "
            "maybe expired) and that the service account may call this Docker RUN"
        )

    def check_health(self, step: Step) -> str:
        response = self.http.get("/health")
        if response.status_code != 200:
            raise StepFailed(f"GET /health: {describe(response)}")
        body = response.json()
        step.details = body
        if body.get("status") == "unhealthy":
            raise StepFailed(f"the engine failed: {(body.get('engine') or {}).get('error')}")
        return f"status {body.get('status')}, engine state {(body.get('engine') or {}).get('state')}"

    def check_ready(self, step: Step) -> str:
        deadline = time.monotonic() + self.args.ready_timeout
        while True:
            response = self.http.get("/ready")
            if response.status_code == 200:
                step.details = {"status": 200}
                return "ready"
            if time.monotonic() >= deadline:
                raise StepFailed(f"not ready after {self.args.ready_timeout:.0f} s: {describe(response)}")
            time.sleep(2)

    def check_ocr(self, step: Step) -> str:
        assert self.client is not None
        content = SAMPLE_PAGE.read_bytes()
        started = time.perf_counter()
        response = self.client.request("POST", "/ocr", files={"file": (SAMPLE_PAGE.name, content)})
        if response.status_code == 202:  # slower than SYNC_TIMEOUT_S: it went on as a job
            job_id = response.json()["id"]
            self.client.wait_job(job_id, poll_s=1.0, timeout_s=self.args.job_timeout)
            response = self.client.job_result(job_id)
        if response.status_code != 200:
            raise StepFailed(f"POST /ocr: {describe(response)}")
        step.ms = round((time.perf_counter() - started) * 1000, 1)
        body = response.json()
        error_rate = cer(SAMPLE_TEXT, body.get("text", ""))
        step.details = {
            "cer": round(error_rate, 4),
            "engine": body.get("engine"),
            "pages": body.get("page_count"),
            "server_timings": body.get("timings"),
            "text": body.get("text", "")[:500],
        }
        if error_rate > self.args.max_cer:
            raise StepFailed(f"the sample page read badly: CER {error_rate:.3f} > {self.args.max_cer}")
        return f"sample page read, CER {error_rate:.3f}, engine {body.get('engine')}"

    def check_job(self, step: Step) -> str:
        assert self.client is not None
        started = time.perf_counter()
        accepted = self.client.submit_job(SAMPLE_PAGE.name, SAMPLE_PAGE.read_bytes())
        submit_ms = (time.perf_counter() - started) * 1000
        seen: list[str] = []

        def note(status: dict[str, Any]) -> None:
            if not seen or seen[-1] != status["status"]:
                seen.append(status["status"])

        final = self.client.wait_job(accepted["id"], poll_s=0.5, timeout_s=self.args.job_timeout, on_status=note)
        finished_ms = (time.perf_counter() - started) * 1000
        if final["status"] != "succeeded":
            raise StepFailed(f"job {accepted['id']} ended {final['status']}: {final.get('error')}")
        markdown = self.client.job_result(accepted["id"], output="markdown").text
        total_ms = (time.perf_counter() - started) * 1000
        error_rate = cer(SAMPLE_TEXT, markdown)
        step.details = {
            "job_id": accepted["id"],
            "statuses": seen,
            "submit_ms": round(submit_ms, 1),
            "finished_ms": round(finished_ms, 1),
            "total_ms": round(total_ms, 1),
            "cer": round(error_rate, 4),
        }
        if error_rate > self.args.max_cer:
            raise StepFailed(f"the job's Markdown read badly: CER {error_rate:.3f} > {self.args.max_cer}")
        return f"job {' -> '.join(seen)}; accepted in {submit_ms:.0f} ms, done in {finished_ms:.0f} ms"

    def check_latency(self, step: Step) -> str:
        samples = []
        for _ in range(self.args.health_samples):
            started = time.perf_counter()
            response = self.http.get("/health")
            samples.append((time.perf_counter() - started) * 1000)
            if response.status_code != 200:
                raise StepFailed(f"GET /health: {describe(response)}")
        median, worst = statistics.median(samples), max(samples)
        step.details = {"health_ms_p50": round(median, 1), "health_ms_max": round(worst, 1), "samples": len(samples)}
        if median > self.args.max_health_ms:
            raise StepFailed(f"/health median {median:.0f} ms > {self.args.max_health_ms:.0f} ms")
        return f"/health p50 {median:.0f} ms, max {worst:.0f} ms over {len(samples)} requests"


def vlm_base_url(url: str) -> str:
    """The OpenAI base URL: ``https://x.ru`` -> ``https://x.ru/v1``; a URL with a path is kept (as the service does)."""
    url = url.strip().rstrip("/")
    parts = urlsplit(url)
    return url + "/v1" if parts.scheme and parts.netloc and not parts.path else url


class VlmCheck(Checks):
    """``--vlm-url``: the VLM server on its own, with the credentials the service would use for it."""

    def __init__(self, settings: ClientSettings, args: argparse.Namespace) -> None:
        super().__init__(settings, args)
        self.url = vlm_base_url(args.vlm_url)
        self.model: str | None = None
        self.http: httpx.Client | None = None

    def run(self) -> list[Step]:
        self.step("config", self.check_config, blocking=True)
        self.tokens = token_source(self.settings, timeout=self.args.timeout)
        timeout = httpx.Timeout(self.args.timeout, connect=min(self.args.timeout, 15.0))
        self.http = httpx.Client(base_url=self.url, auth=ServiceAuth(self.tokens), timeout=timeout)
        try:
            self.step("token", self.check_token, blocking=True)
            self.step("models", self.check_models, blocking=True)
            self.step("completion", self.check_completion, blocking=True)
            self.step("timing", self.check_timing)
        finally:
            self.http.close()
        return self.steps

    def check_config(self, step: Step) -> str:
        step.details = {"vlm_url": self.url, "vlm_model": self.args.vlm_model or "(from GET /models)"}
        step.details.update(self.config_details())
        problems = [p for p in self.settings.problems() if "CLOUD_RU_INFERENCE_URL" not in p]
        if not self.url.startswith(("http://", "https://")):
            problems.append(f"--vlm-url must start with http:// or https://, got {self.url[:60]!r}")
        if problems:
            raise StepFailed("; ".join(problems))
        modes = {"iam": "IAM key pair", "token": "ready token or API key (CLOUD_RU_TOKEN)", "none": "no credential"}
        return f"{self.url}; {modes[self.settings.auth_mode]}"

    def check_token(self, step: Step) -> str:
        mode = self.settings.auth_mode
        if mode == "none":
            raise StepSkipped("no credential configured (a vLLM without --api-key needs none)")
        if mode == "token":
            return "using CLOUD_RU_TOKEN as the bearer value (a static API key, or a token that will expire)"
        return self.exchange_token(step)

    def check_models(self, step: Step) -> str:
        assert self.http is not None
        response = self.http.get("/models")
        if response.status_code in (401, 403):
            raise StepFailed(
                f"GET /models: {describe(response)}: the server refused the credential (for a Model RUN: the "
                "service account needs access to it; for vLLM: its --api-key)"
            )
        if response.status_code != 200:
            raise StepFailed(f"GET {self.url}/models: {describe(response)} (is this the OpenAI base URL, .../v1?)")
        offered = [str(model["id"]) for model in response.json()["data"]]
        step.details = {"models": offered}
        wanted = self.args.vlm_model
        if wanted and wanted not in offered:
            raise StepFailed(f"{wanted} is not served; the server offers: {', '.join(offered)} (set VL_MODEL_NAME)")
        if not wanted and len(offered) != 1:
            raise StepFailed(f"the server offers {len(offered)} models ({', '.join(offered)}): pass --vlm-model")
        self.model = wanted or offered[0]
        step.details["model"] = self.model
        return f"serves {', '.join(offered)}; requests will name {self.model}"

    def _complete(self) -> tuple[str, float, dict[str, Any]]:
        """One completion of the sample page: (text, seconds, usage)."""
        assert self.http is not None
        image = base64.b64encode(SAMPLE_PAGE.read_bytes()).decode()
        content = [
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{image}"}},
            {"type": "text", "text": "OCR:"},
        ]
        body = {
            "model": self.model,
            "messages": [{"role": "user", "content": content}],
            "temperature": 0,
            "max_completion_tokens": 1024,
        }
        started = time.perf_counter()
        response = self.http.post("/chat/completions", json=body)
        seconds = time.perf_counter() - started
        if response.status_code != 200:
            raise StepFailed(f"POST /chat/completions: {describe(response)}")
        answer = response.json()
        return str(answer["choices"][0]["message"]["content"]), seconds, dict(answer.get("usage") or {})

    def check_completion(self, step: Step) -> str:
        text, seconds, usage = self._complete()
        step.ms = round(seconds * 1000, 1)
        error_rate = cer(SAMPLE_TEXT, text)
        step.details = {"cer": round(error_rate, 4), "usage": usage, "text": text[:500]}
        if error_rate > self.args.max_cer:
            raise StepFailed(f"the sample page read badly: CER {error_rate:.3f} > {self.args.max_cer}")
        return f"sample page read in {seconds:.2f} s, CER {error_rate:.3f}"

    def check_timing(self, step: Step) -> str:
        times, tokens = [], 0
        for _ in range(self.args.vlm_samples):
            _, seconds, usage = self._complete()
            times.append(seconds)
            tokens += int(usage.get("completion_tokens") or 0)
        median = statistics.median(times)
        rate = tokens / sum(times) if tokens else None
        step.details = {"seconds_p50": round(median, 3), "seconds_max": round(max(times), 3), "tokens_per_s": rate}
        speed = f", {rate:.0f} generated tokens/s" if rate else ""
        return (
            f"{len(times)} completions one after another: p50 {median:.2f} s, max {max(times):.2f} s{speed} "
            "(one request at a time: the server batches many, see VL_MAX_CONCURRENCY)"
        )


def render(url: str, steps: list[Step], title: str = "Deployment check") -> str:
    lines = [f"{title}: {url or '(no URL)'}"]
    for step in steps:
        took = f"  [{step.ms:.0f} ms]" if step.ms is not None and step.status != "skip" else ""
        lines.append(f"  {step.status.upper():4}  {step.name:<14} {step.message}{took}")
    failed = [step.name for step in steps if step.status == "fail"]
    passed = sum(step.status == "pass" for step in steps)
    lines.append(
        f"RESULT: {'FAIL (' + ', '.join(failed) + ')' if failed else 'PASS'}: {passed} passed, "
        f"{len(failed)} failed, {len(steps) - passed - len(failed)} skipped"
    )
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="deployment URL (overrides CLOUD_RU_INFERENCE_URL)")
    parser.add_argument("--env-file", type=Path, default=Path(".env"), help="dotenv file (default ./.env)")
    parser.add_argument("--report", type=Path, default=Path("deployment_check.json"), help="JSON report path")
    parser.add_argument("--timeout", type=float, default=120.0, help="HTTP timeout per request, s (default 120)")
    parser.add_argument("--ready-timeout", type=float, default=60.0, help="wait this long for /ready, s")
    parser.add_argument("--job-timeout", type=float, default=300.0, help="wait this long for the job, s")
    parser.add_argument("--max-cer", type=float, default=0.1, help="highest character error rate accepted")
    parser.add_argument("--health-samples", type=int, default=10, help="/health requests timed (default 10)")
    parser.add_argument("--max-health-ms", type=float, default=2000.0, help="highest /health median accepted")
    parser.add_argument("--vlm-url", help="check this VLM server (OpenAI base URL) instead of the service")
    parser.add_argument("--vlm-model", default="", help="the model to name (default: the only one served)")
    parser.add_argument("--vlm-samples", type=int, default=3, help="completions timed after the first (default 3)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = load_settings(args.env_file, args.url)
    check: DeploymentCheck | VlmCheck = VlmCheck(settings, args) if args.vlm_url else DeploymentCheck(settings, args)
    steps = check.run()
    print(render(check.url, steps, "VLM server check" if args.vlm_url else "Deployment check"))
    report = {
        "url": check.url,
        "checked_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "passed": not any(step.status == "fail" for step in steps),
        "steps": [asdict(step) for step in steps],
    }
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")
    print(f"report: {args.report}")
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
