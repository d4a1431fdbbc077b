"""Watches the catalog ConfigMap through the Kubernetes API (in a cluster).

A mounted ConfigMap reaches the pod's file only after the kubelet's sync period (a minute or
more); watching the object itself makes a change the route table of every edge within a
second. The official `kubernetes` client is synchronous, so the list-then-watch loop runs
in a thread and hands each new catalog text to the event loop. A watch that expires (410
Gone) or breaks is resumed by listing again.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any

from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

log = logging.getLogger(__name__)
WATCH_SECONDS = 300
RETRY_SECONDS = 1.0

Apply = Callable[[str, str], Coroutine[Any, Any, bool]]


def api_client(api_url: str) -> client.ApiClient:
    """`api_url` (tests, proxies) or the pod's in-cluster service account, else kubeconfig."""
    if api_url:
        configuration = client.Configuration()
        configuration.host = api_url
        return client.ApiClient(configuration)
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    return client.ApiClient()


class ConfigMapWatcher:
    def __init__(self, api: client.ApiClient, namespace: str, name: str, key: str) -> None:
        self._core = client.CoreV1Api(api)
        self._namespace = namespace
        self._name = name
        self._key = key
        self._watch = watch.Watch()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self.source = f"configmap {namespace}/{name}[{key}]"

    def start(self, loop: asyncio.AbstractEventLoop, apply: Apply) -> None:
        self._thread = threading.Thread(
            target=self._run, args=(loop, apply), name="catalog-configmap", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        self._watch.stop()

    def _run(self, loop: asyncio.AbstractEventLoop, apply: Apply) -> None:
        while not self._stopped.is_set():
            try:
                self._list_and_watch(loop, apply)
            except ApiException as exc:
                log.warning("%s: API error %s; relisting", self.source, exc.status)
            except Exception as exc:
                log.warning("%s: watch failed (%r); retrying", self.source, exc)
            if not self._stopped.is_set():
                time.sleep(RETRY_SECONDS)

    def _list_and_watch(self, loop: asyncio.AbstractEventLoop, apply: Apply) -> None:
        selector = f"metadata.name={self._name}"
        listed = self._core.list_namespaced_config_map(self._namespace, field_selector=selector)
        for item in listed.items:
            self._hand_over(loop, apply, item.data)
        stream = self._watch.stream(
            self._core.list_namespaced_config_map,
            self._namespace,
            field_selector=selector,
            resource_version=listed.metadata.resource_version if listed.metadata else None,
            timeout_seconds=WATCH_SECONDS,
        )
        for event in stream:
            if self._stopped.is_set():
                return
            if event["type"] in ("ADDED", "MODIFIED"):
                self._hand_over(loop, apply, event["object"].data)

    def _hand_over(
        self, loop: asyncio.AbstractEventLoop, apply: Apply, data: dict[str, Any] | None
    ) -> None:
        text = (data or {}).get(self._key)
        if text is None:
            log.error("%s: key missing; keeping the current catalog", self.source)
            return
        asyncio.run_coroutine_threadsafe(apply(text, self.source), loop).result(timeout=30)
