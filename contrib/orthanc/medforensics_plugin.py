"""Orthanc Python plugin: every stable study is checked by the medforensics REST API.

For sites that prefer Orthanc to call out over HTTP rather than route images through the DICOM
gateway. Orthanc's Python plugin embeds the system Python (Debian: python3.11), not a virtual
environment, so this script uses the standard library only.

When a study becomes stable, each of its image series (not our own result objects, not SR / SEG /
PDF / presentation states) is downloaded from Orthanc as a zip and uploaded to
``POST /v1/analyses`` (multipart field ``files``, header ``X-API-Key``); the plugin then polls
``GET /v1/analyses/{id}`` until the analysis is ``done`` or ``failed``. Then:

* the verdict is logged (a warning for anything but ``authentic``);
* with ``StoreSr``, the analysis' DICOM SR (``/v1/analyses/{id}/sr.dcm``) is stored into Orthanc,
  next to the series it describes;
* with ``MetadataName``, the verdict is saved as series metadata (declare the name under
  ``UserMetadata`` in the Orthanc configuration);
* with ``ForwardAuthenticTo``, series called authentic are sent to that DICOM modality.

Configuration (Orthanc's JSON, all keys optional except ``Url``)::

    "Plugins": ["/usr/share/orthanc/plugins/libOrthancPython.so"],
    "PythonScript": "/etc/orthanc/medforensics_plugin.py",
    "Medforensics": {
      "Url": "http://127.0.0.1:8000",
      "ApiKey": "mfk_...",
      "TimeoutSeconds": 30,
      "PollSeconds": 2,
      "MaxWaitSeconds": 900,
      "StoreSr": true,
      "MetadataName": "medforensics",
      "ForwardAuthenticTo": null
    },
    "UserMetadata": {"medforensics": 4242}
"""

from __future__ import annotations

import json
import queue
import threading
import time
import urllib.error
import urllib.request
import uuid

import orthanc  # provided by Orthanc's Python plugin

PLUGIN = "medforensics plugin"
OUR_MANUFACTURER = "medforensics"
NON_IMAGE_MODALITIES = {"SR", "SEG", "DOC", "KO", "PR", "REG", "RTSTRUCT", "RTPLAN", "RTDOSE"}
FINISHED = {"done", "failed"}


def _settings():
    try:
        config = json.loads(orthanc.GetConfiguration())
    except ValueError:
        config = {}
    mine = config.get("Medforensics", {}) or {}
    return {
        "url": str(mine.get("Url", "http://127.0.0.1:8000")).rstrip("/"),
        "api_key": mine.get("ApiKey") or "",
        "timeout": float(mine.get("TimeoutSeconds", 30)),
        "poll": float(mine.get("PollSeconds", 2)),
        "max_wait": float(mine.get("MaxWaitSeconds", 900)),
        "store_sr": bool(mine.get("StoreSr", True)),
        "metadata": mine.get("MetadataName") or None,
        "forward_to": mine.get("ForwardAuthenticTo") or None,
    }


SETTINGS = _settings()
WORK = queue.Queue()
#: Orthanc series ID -> instances it had when checked
CHECKED = {}


class ServiceError(Exception):
    """The REST service could not be reached or answered with an error."""


def _request(method, path, body=None, content_type=None):
    headers = {"Accept": "application/json"}
    if SETTINGS["api_key"]:
        headers["X-API-Key"] = SETTINGS["api_key"]
    if content_type:
        headers["Content-Type"] = content_type
    url = SETTINGS["url"] + path
    request = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=SETTINGS["timeout"]) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read()
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return 404, "", b""
        detail = exc.read()[:300].decode("utf-8", "replace")
        raise ServiceError(f"{method} {path}: HTTP {exc.code} {detail}") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise ServiceError(f"{method} {path}: {getattr(exc, 'reason', exc)}") from exc


def _multipart(field, filename, data, content_type):
    boundary = uuid.uuid4().hex
    head = (
        f"--{boundary}\r\n"
        f'Content-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
        f"Content-Type: {content_type}\r\n\r\n"
    ).encode("ascii")
    tail = f"\r\n--{boundary}--\r\n".encode("ascii")
    return head + data + tail, f"multipart/form-data; boundary={boundary}"


def _skip_reason(series):
    tags = series.get("MainDicomTags", {})
    if (tags.get("Manufacturer") or "").strip().lower() == OUR_MANUFACTURER:
        return "a medforensics result object"
    if (tags.get("SeriesDescription") or "").strip().lower().startswith(OUR_MANUFACTURER + " "):
        return "a medforensics result object"
    modality = (tags.get("Modality") or "").strip().upper()
    if modality in NON_IMAGE_MODALITIES:
        return f"modality {modality} holds no images"
    return None


def _already_checked(series_id, instances):
    """A series checked before with as many instances (our SR arriving makes the study stable
    again; without this the plugin would check the same series over and over)."""
    if CHECKED.get(series_id) == instances:
        return "already checked"
    if SETTINGS["metadata"]:
        try:
            saved = json.loads(
                orthanc.RestApiGet(f"/series/{series_id}/metadata/{SETTINGS['metadata']}")
            )
        except Exception:  # no metadata yet: Orthanc answers 404, the plugin raises
            return None
        if saved.get("instances") == instances:
            return "already checked"
    return None


def _submit(series_id):
    archive = orthanc.RestApiGet(f"/series/{series_id}/archive")
    body, content_type = _multipart("files", f"series-{series_id}.zip", archive, "application/zip")
    status, _type, reply = _request("POST", "/v1/analyses", body, content_type)
    if status not in (200, 201, 202):
        raise ServiceError(f"POST /v1/analyses answered HTTP {status}")
    return json.loads(reply)


def _wait(analysis):
    deadline = time.monotonic() + SETTINGS["max_wait"]
    while analysis.get("status") not in FINISHED:
        if time.monotonic() > deadline:
            raise ServiceError(
                f"analysis {analysis.get('id')} still {analysis.get('status')} "
                f"after {SETTINGS['max_wait']:.0f} s"
            )
        time.sleep(SETTINGS["poll"])
        status, _type, reply = _request("GET", f"/v1/analyses/{analysis['id']}")
        if status == 404:
            raise ServiceError(f"analysis {analysis.get('id')} disappeared")
        analysis = json.loads(reply)
    return analysis


def _verdict(analysis):
    verdict, score = analysis.get("verdict"), analysis.get("score")
    results = (analysis.get("result") or {}).get("results") or []
    if verdict is None and results:
        order = {"authentic": 0, "inconclusive": 1, "manipulated": 2}
        worst = max(results, key=lambda r: order.get(r.get("verdict"), 1))
        verdict, score = worst.get("verdict"), worst.get("score")
    return verdict or "error", score


def _check_series(study_id, series_id):
    series = json.loads(orthanc.RestApiGet(f"/series/{series_id}"))
    reason = _skip_reason(series) or _already_checked(series_id, len(series.get("Instances", [])))
    uid = series.get("MainDicomTags", {}).get("SeriesInstanceUID", series_id)
    if reason:
        orthanc.LogInfo(f"{PLUGIN}: series {uid} skipped: {reason}")
        return
    analysis = _wait(_submit(series_id))
    CHECKED[series_id] = len(series.get("Instances", []))
    name = analysis.get("id")
    if analysis.get("status") == "failed":
        orthanc.LogError(
            f"{PLUGIN}: analysis {name} of series {uid} failed: {analysis.get('error')}"
        )
        return
    verdict, score = _verdict(analysis)
    line = (
        f"{PLUGIN}: series {uid} of study {study_id} is {verdict.upper()} "
        f"(score {score}, analysis {name})"
    )
    if verdict == "authentic":
        orthanc.LogWarning(line)
    else:
        orthanc.LogError(line)
    if SETTINGS["metadata"]:
        summary = json.dumps(
            {"verdict": verdict, "score": score, "analysis": name, "instances": CHECKED[series_id]}
        )
        orthanc.RestApiPut(f"/series/{series_id}/metadata/{SETTINGS['metadata']}", summary)
    if SETTINGS["store_sr"]:
        status, _type, sr = _request("GET", f"/v1/analyses/{name}/sr.dcm")
        if status == 200 and sr:
            orthanc.RestApiPost("/instances", sr)
    if verdict == "authentic" and SETTINGS["forward_to"]:
        orthanc.RestApiPost(
            f"/modalities/{SETTINGS['forward_to']}/store",
            json.dumps({"Resources": [series_id], "Asynchronous": True}),
        )


def _check_study(study_id):
    study = json.loads(orthanc.RestApiGet(f"/studies/{study_id}"))
    for series_id in study.get("Series", []):
        try:
            _check_series(study_id, series_id)
        except ServiceError as exc:
            orthanc.LogError(f"{PLUGIN}: series {series_id} not checked: {exc}")
        except Exception as exc:  # one bad series must not stop the worker
            orthanc.LogError(
                f"{PLUGIN}: series {series_id} not checked ({type(exc).__name__}: {exc})"
            )


def _worker():
    while True:
        study_id = WORK.get()
        if study_id is None:
            return
        _check_study(study_id)


def OnChange(change_type, level, resource_id):
    """Orthanc calls this on its own thread: hand the study to the worker, never block here."""
    if change_type == orthanc.ChangeType.STABLE_STUDY:
        WORK.put(resource_id)
    elif change_type == orthanc.ChangeType.ORTHANC_STOPPED:
        WORK.put(None)


threading.Thread(target=_worker, name="medforensics-plugin", daemon=True).start()
orthanc.RegisterOnChangeCallback(OnChange)
orthanc.LogWarning(f"{PLUGIN} registered: stable studies go to {SETTINGS['url']}/v1/analyses")
