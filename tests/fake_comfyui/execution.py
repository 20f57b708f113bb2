"""Prompt validation, the prompt queue and the executor, after ComfyUI's execution.py.

Error objects, node_errors, history entries and the websocket events a job sends keep the real
shapes and order. Caching follows the real default (--cache-classic): a node whose inputs did not
change since the previous prompt is not executed again, so re-queuing an identical workflow saves
no new image; FakeSleep is never cached (its IS_CHANGED is NaN, like a sampler's new seed).
"""

from __future__ import annotations

import copy
import heapq
import inspect
import logging
import math
import os
import threading
import time
import traceback
import uuid
from collections import OrderedDict
from typing import Dict, List, NamedTuple, Optional

import nodes
from comfy import model_management
from comfy.model_management import InterruptProcessingException
from protocol import BinaryEventTypes

MAXIMUM_HISTORY_SIZE = 10000
SENSITIVE_EXTRA_DATA_KEYS = ("auth_token_comfy_org", "api_key_comfy_org")


def full_type_name(klass) -> str:
    module = klass.__module__
    return klass.__qualname__ if module == "builtins" else f"{module}.{klass.__qualname__}"


def node_sort_key(node_id: str):
    return (0, int(node_id), "") if str(node_id).isdigit() else (1, 0, str(node_id))


# --- Validation --------------------------------------------------------------------------------

def get_input_info(schema: dict, name: str):
    """(type, "required"|"optional"|"hidden", options) of one input, or (None, None, None)."""
    for category in ("required", "optional", "hidden"):
        spec = schema.get(category, {}).get(name)
        if spec is not None:
            if isinstance(spec, str):
                return spec, category, {}
            return spec[0], category, (spec[1] if len(spec) > 1 else {})
    return None, None, None


def types_match(received, expected) -> bool:
    """comfy_execution/validation.py's non-strict rule, with "*" as the any-type custom nodes use."""
    if received == expected or received == "*" or expected == "*":
        return True
    if not isinstance(received, str) or not isinstance(expected, str):
        return False
    return bool({t.strip() for t in received.split(",")} & {t.strip() for t in expected.split(",")})


def _error(kind: str, message: str, details: str, **extra_info) -> dict:
    return {"type": kind, "message": message, "details": details, "extra_info": extra_info}


def _convert(value, input_type):
    if input_type == "INT":
        return int(value)
    if input_type == "FLOAT":
        return float(value)
    if input_type == "STRING":
        return str(value)
    if input_type == "BOOLEAN":
        return bool(value)
    return value


def validate_inputs(prompt: dict, unique_id: str, validated: dict):
    """(ok, errors, unique_id) for one node and, through its links, its ancestors.

    Converts widget values in place (as the real validator does), so the executor gets typed values.
    """
    if unique_id in validated:
        return validated[unique_id]
    inputs = prompt[unique_id]["inputs"]
    schema = nodes.NODE_CLASS_MAPPINGS[prompt[unique_id]["class_type"]].INPUT_TYPES()
    errors: List[dict] = []
    valid = True
    node_class = nodes.NODE_CLASS_MAPPINGS[prompt[unique_id]["class_type"]]
    # Inputs a node checks itself (VALIDATE_INPUTS arguments) skip the min/max/list checks.
    custom_check = getattr(node_class, "VALIDATE_INPUTS", None)
    custom_inputs = [a for a in inspect.getfullargspec(custom_check).args if a != "cls"] if custom_check else []

    for name in list(schema.get("required", {})) + list(schema.get("optional", {})):
        input_type, category, options = get_input_info(schema, name)
        if name not in inputs:
            if category == "required":
                errors.append(_error("required_input_missing", "Required input is missing", name, input_name=name))
            continue
        value = inputs[name]
        info = (input_type, options)
        if isinstance(value, list):
            if len(value) != 2:
                errors.append(_error("bad_linked_input", "Bad linked input, must be a length-2 list of [node_id, slot_index]",
                                     name, input_name=name, input_config=info, received_value=value))
                continue
            source_id = value[0]
            received_type = nodes.NODE_CLASS_MAPPINGS[prompt[source_id]["class_type"]].RETURN_TYPES[value[1]]
            if not types_match(received_type, input_type):
                errors.append(_error("return_type_mismatch", "Return type mismatch between linked nodes",
                                     f"{name}, received_type({received_type}) mismatch input_type({input_type})",
                                     input_name=name, input_config=info, received_type=received_type, linked_node=value))
                continue
            try:
                if validate_inputs(prompt, source_id, validated)[0] is False:
                    valid = False
            except Exception as ex:
                valid = False
                validated[source_id] = (False, [_error(
                    "exception_during_inner_validation", "Exception when validating inner node", str(ex),
                    input_name=name, input_config=info, exception_message=str(ex),
                    exception_type=full_type_name(type(ex)), traceback=traceback.format_tb(ex.__traceback__),
                    linked_node=value)], source_id)
            continue

        if isinstance(value, dict) and "__value__" in value:
            value = inputs[name] = value["__value__"]
        try:
            value = inputs[name] = _convert(value, input_type)
        except Exception as ex:
            errors.append(_error("invalid_input_type", f"Failed to convert an input value to a {input_type} value",
                                 f"{name}, {value}, {ex}", input_name=name, input_config=info,
                                 received_value=value, exception_message=str(ex)))
            continue
        if name in custom_inputs:
            continue
        if "min" in options and value < options["min"]:
            errors.append(_error("value_smaller_than_min", "Value {} smaller than min of {}".format(value, options["min"]),
                                 name, input_name=name, input_config=info, received_value=value))
            continue
        if "max" in options and value > options["max"]:
            errors.append(_error("value_bigger_than_max", "Value {} bigger than max of {}".format(value, options["max"]),
                                 name, input_name=name, input_config=info, received_value=value))
            continue
        if isinstance(input_type, list) and value not in input_type:
            long_list = len(input_type) > 20
            listed = f"(list of length {len(input_type)})" if long_list else str(input_type)
            errors.append(_error("value_not_in_list", "Value not in list", f"{name}: '{value}' not in {listed}",
                                 input_name=name, input_config=None if long_list else info, received_value=value))

    if custom_inputs:
        given = {name: inputs[name] for name in custom_inputs if name in inputs and not isinstance(inputs[name], list)}
        answer = custom_check(**given)
        if answer is not True:
            for name in given:
                details = name if answer is False else f"{name} - {answer}"
                errors.append(_error("custom_validation_failed", "Custom validation failed for node", details,
                                     input_name=name))

    result = (False, errors, unique_id) if errors or not valid else (True, [], unique_id)
    validated[unique_id] = result
    return result


def validate_prompt(prompt_id: str, prompt: dict, partial_execution_list: Optional[list]):
    """(ok, error, outputs_to_execute, node_errors), as ComfyUI's validate_prompt returns."""
    outputs = set()
    for node_id in prompt:
        if "class_type" not in prompt[node_id]:
            return (False, _error("invalid_prompt", "Cannot execute because a node is missing the class_type property.",
                                  f"Node ID '#{node_id}'"), [], {})
        class_type = prompt[node_id]["class_type"]
        node_class = nodes.NODE_CLASS_MAPPINGS.get(class_type)
        if node_class is None:
            return (False, _error("invalid_prompt", f"Cannot execute because node {class_type} does not exist.",
                                  f"Node ID '#{node_id}'"), [], {})
        if getattr(node_class, "OUTPUT_NODE", False) is True and (
                partial_execution_list is None or node_id in partial_execution_list):
            outputs.add(node_id)

    if not outputs:
        return (False, _error("prompt_no_outputs", "Prompt has no outputs", ""), [], {})

    good_outputs = set()
    failures = []
    node_errors: Dict[str, dict] = {}
    validated: dict = {}
    for output in sorted(outputs, key=node_sort_key):
        try:
            valid, reasons, _ = validate_inputs(prompt, output, validated)
        except Exception as ex:
            valid = False
            reasons = [_error("exception_during_validation", "Exception when validating node", str(ex),
                              exception_type=full_type_name(type(ex)),
                              traceback=traceback.format_tb(ex.__traceback__))]
            validated[output] = (False, reasons, output)
        if valid is True:
            good_outputs.add(output)
            continue
        logging.error(f"Failed to validate prompt for output {output}:")
        if reasons:
            logging.error("* (prompt):")
            for reason in reasons:
                logging.error(f"  - {reason['message']}: {reason['details']}")
        failures.append((output, reasons))
        for node_id, (node_valid, node_reasons, _) in validated.items():
            # Nodes downstream of a bad node are invalid without reasons of their own: not reported.
            if node_valid is not True and node_reasons:
                if node_id not in node_errors:
                    class_type = prompt[node_id]["class_type"]
                    node_errors[node_id] = {"errors": node_reasons, "dependent_outputs": [], "class_type": class_type}
                    logging.error(f"* {class_type} {node_id}:")
                    for reason in node_reasons:
                        logging.error(f"  - {reason['message']}: {reason['details']}")
                node_errors[node_id]["dependent_outputs"].append(output)
        logging.error("Output will be ignored")

    if not good_outputs:
        details = "\n".join(f"{e['message']}: {e['details']}" for _, reasons in failures for e in reasons)
        return (False, _error("prompt_outputs_failed_validation", "Prompt outputs failed validation", details),
                [], node_errors)
    return (True, None, sorted(good_outputs, key=node_sort_key), node_errors)


# --- Cache -------------------------------------------------------------------------------------

class CacheEntry(NamedTuple):
    ui: Optional[dict]
    outputs: tuple


class OutputCache:
    """Node results keyed by input signature. mode: "classic" keeps the last prompt's nodes,
    "lru" the last `size` results, "none" nothing."""

    def __init__(self, mode: str = "classic", size: int = 0):
        self.mode, self.size = mode, size
        self.entries: OrderedDict[object, CacheEntry] = OrderedDict()

    def get(self, key) -> Optional[CacheEntry]:
        return self.entries.get(key)

    def set(self, key, entry: CacheEntry) -> None:
        if self.mode == "none":
            return
        self.entries[key] = entry
        self.entries.move_to_end(key)
        if self.mode == "lru":
            while len(self.entries) > self.size:
                self.entries.popitem(last=False)

    def keep_only(self, keys) -> None:
        if self.mode == "classic":
            for key in [k for k in self.entries if k not in keys]:
                del self.entries[key]


def signatures(prompt: dict) -> dict:
    """node id -> hashable signature of its class, widget values and (recursively) linked inputs."""
    out: dict = {}

    def sig(node_id):
        if node_id not in out:
            try:
                out[node_id] = signature_of(node_id)
            except Exception:  # a broken node outside the validated outputs: never a cache hit
                out[node_id] = ("unsignable", uuid.uuid4().hex)
        return out[node_id]

    def signature_of(node_id):
        node = prompt[node_id]
        node_class = nodes.NODE_CLASS_MAPPINGS[node["class_type"]]
        parts = []
        for name in sorted(node["inputs"]):
            value = node["inputs"][name]
            if isinstance(value, list):
                parts.append((name, "link", sig(value[0]), value[1]))
            else:
                parts.append((name, repr(value)))
        changed = None
        if hasattr(node_class, "IS_CHANGED"):
            changed = node_class.IS_CHANGED(**{k: v for k, v in node["inputs"].items() if not isinstance(v, list)})
            if isinstance(changed, float) and math.isnan(changed):
                changed = uuid.uuid4().hex  # NaN never equals itself: never a cache hit
        return (node["class_type"], repr(changed), tuple(parts))

    for node_id in prompt:
        sig(node_id)
    return out


# --- Queue -------------------------------------------------------------------------------------

class ExecutionStatus(NamedTuple):
    status_str: str   # "success" | "error"
    completed: bool
    messages: list


class PromptQueue:
    """Heap of (number, prompt_id, prompt, extra_data, outputs_to_execute, sensitive) plus history."""

    def __init__(self, server):
        self.server = server
        self.mutex = threading.RLock()
        self.not_empty = threading.Condition(self.mutex)
        self.task_counter = 0
        self.queue: list = []
        self.currently_running: dict = {}
        self.history: dict = {}
        self.flags: dict = {}

    def put(self, item) -> None:
        with self.mutex:
            heapq.heappush(self.queue, item)
            self.server.queue_updated()
            self.not_empty.notify()

    def get(self, timeout=None):
        with self.not_empty:
            while not self.queue:
                self.not_empty.wait(timeout=timeout)
                if timeout is not None and not self.queue:
                    return None
            item = heapq.heappop(self.queue)
            item_id = self.task_counter
            self.currently_running[item_id] = copy.deepcopy(item)
            self.task_counter += 1
            self.server.queue_updated()
            return item, item_id

    def task_done(self, item_id, history_result: dict, status: Optional[ExecutionStatus]) -> None:
        with self.mutex:
            prompt = self.currently_running.pop(item_id)[:5]  # drop the sensitive part
            if len(self.history) > MAXIMUM_HISTORY_SIZE:
                self.history.pop(next(iter(self.history)))
            self.history[prompt[1]] = {
                "prompt": prompt,
                "outputs": {},
                "status": copy.deepcopy(status._asdict()) if status is not None else None,
            }
            self.history[prompt[1]].update(history_result)
            self.server.queue_updated()

    def get_current_queue(self):
        with self.mutex:
            return list(self.currently_running.values()), copy.copy(self.queue)

    def get_tasks_remaining(self) -> int:
        with self.mutex:
            return len(self.queue) + len(self.currently_running)

    def wipe_queue(self) -> None:
        with self.mutex:
            self.queue = []
            self.server.queue_updated()

    def delete_queue_item(self, predicate) -> bool:
        with self.mutex:
            for i, item in enumerate(self.queue):
                if predicate(item):
                    if len(self.queue) == 1:
                        self.wipe_queue()  # ComfyUI does: one status broadcast more
                    else:
                        self.queue.pop(i)
                        heapq.heapify(self.queue)
                    self.server.queue_updated()
                    return True
        return False

    def get_history(self, prompt_id=None, max_items=None, offset=-1) -> dict:
        with self.mutex:
            if prompt_id is not None:
                return {prompt_id: copy.deepcopy(self.history[prompt_id])} if prompt_id in self.history else {}
            if offset < 0 and max_items is not None:
                offset = len(self.history) - max_items
            out = {}
            for i, key in enumerate(self.history):
                if i >= offset:
                    out[key] = self.history[key]
                    if max_items is not None and len(out) >= max_items:
                        break
            return out

    def wipe_history(self) -> None:
        with self.mutex:
            self.history = {}

    def delete_history_item(self, prompt_id) -> None:
        with self.mutex:
            self.history.pop(prompt_id, None)

    def set_flag(self, name, data) -> None:
        with self.mutex:
            self.flags[name] = data
            self.not_empty.notify()

    def get_flags(self) -> dict:
        with self.mutex:
            flags, self.flags = self.flags, {}
            return flags


# --- Executor ----------------------------------------------------------------------------------

def _format_value(x):
    if x is None or isinstance(x, (int, float, bool, str)):
        return x
    return str(x)


class PromptExecutor:
    def __init__(self, server, knobs, cache_mode: str = "classic", cache_size: int = 0):
        self.server = server
        self.knobs = knobs
        self.cache_mode, self.cache_size = cache_mode, cache_size
        self.reset()

    def reset(self) -> None:
        self.cache = OutputCache(self.cache_mode, self.cache_size)
        self.status_messages: list = []
        self.success = True
        self.history_result: dict = {}

    def add_message(self, event: str, data: dict, broadcast: bool) -> None:
        data = {**data, "timestamp": int(time.time() * 1000)}
        self.status_messages.append((event, data))
        if self.server.client_id is not None or broadcast:
            self.server.send_sync(event, data, self.server.client_id)

    def _send_progress_state(self, prompt_id: str, states: dict) -> None:
        active = {node_id: {"value": s["value"], "max": s["max"], "state": s["state"], "node_id": node_id,
                            "prompt_id": prompt_id, "display_node_id": node_id, "parent_node_id": None,
                            "real_node_id": node_id}
                  for node_id, s in states.items() if s["state"] != "pending"}
        self.server.send_sync("progress_state", {"prompt_id": prompt_id, "nodes": active}, self.server.client_id)

    def _apply_job_knobs(self, job_number: int) -> None:
        """The fault knobs that act on the first node of a job."""
        if self.knobs.crash_on_job == job_number:
            logging.error(f"FAKE_COMFYUI_CRASH_ON_JOB={job_number}: the fake dies now, like a hard crash")
            # Die on the event loop's thread: the answer to the POST /prompt that queued this job,
            # written in the same loop step as the put(), is out before the process goes.
            self.server.loop.call_soon_threadsafe(os._exit, 1)
            threading.Event().wait()
        if self.knobs.hang_on_job == job_number:
            model_management.wait_interruptible(None)
        if self.knobs.job_seconds:
            model_management.wait_interruptible(self.knobs.job_seconds)

    def execute(self, prompt: dict, prompt_id: str, extra_data: dict, execute_outputs: list, job_number: int) -> None:
        model_management.interrupt_current_processing(False)
        server = self.server
        server.client_id = extra_data.get("client_id")
        self.status_messages = []
        self.success = True
        self.add_message("execution_start", {"prompt_id": prompt_id}, broadcast=False)

        sigs = signatures(prompt)
        cached_nodes = [node_id for node_id in prompt if self.cache.get(sigs[node_id]) is not None]
        self.add_message("execution_cached", {"nodes": cached_nodes, "prompt_id": prompt_id}, broadcast=False)

        order: List[str] = []
        results: Dict[str, tuple] = {}  # node id -> outputs, cached ancestors included

        def stage(node_id):
            if node_id in order:
                return
            for value in prompt[node_id]["inputs"].values():
                if isinstance(value, list):
                    hit = self.cache.get(sigs[value[0]])
                    if hit is None:
                        stage(value[0])
                    else:
                        results[value[0]] = hit.outputs
            order.append(node_id)

        for output in execute_outputs:
            stage(output)

        states = {node_id: {"state": "pending", "value": 0, "max": 1} for node_id in prompt}
        ui_outputs: Dict[str, dict] = {}
        executed: set = set()

        for position, node_id in enumerate(order):
            class_type = prompt[node_id]["class_type"]
            node_class = nodes.NODE_CLASS_MAPPINGS[class_type]
            cached = self.cache.get(sigs[node_id])
            input_data: dict = {}
            try:
                if cached is None:
                    states[node_id].update(state="running", value=0.0, max=1.0)
                    self._send_progress_state(prompt_id, states)
                    if server.client_id is not None:
                        server.last_node_id = node_id
                        server.send_sync("executing", {"node": node_id, "display_node": node_id,
                                                       "prompt_id": prompt_id}, server.client_id)
                if position == 0:
                    self._apply_job_knobs(job_number)
                if cached is not None:
                    if server.client_id is not None:
                        server.send_sync("executed", {"node": node_id, "display_node": node_id,
                                                      "output": (cached.ui or {}).get("output"),
                                                      "prompt_id": prompt_id}, server.client_id)
                    if cached.ui is not None:
                        ui_outputs[node_id] = cached.ui
                    states[node_id].update(state="finished", value=1)
                    self._send_progress_state(prompt_id, states)
                    continue
                nodes.before_node_execution()
                for name, value in prompt[node_id]["inputs"].items():
                    input_data[name] = results[value[0]][value[1]] if isinstance(value, list) else value
                for name, kind in node_class.INPUT_TYPES().get("hidden", {}).items():
                    input_data[name] = {"PROMPT": prompt, "EXTRA_PNGINFO": extra_data.get("extra_pnginfo"),
                                        "UNIQUE_ID": node_id}.get(kind)
                nodes.progress_hook = self._progress_hook(prompt_id, node_id, states)
                try:
                    returned = getattr(node_class(), node_class.FUNCTION)(**input_data)
                finally:
                    nodes.progress_hook = None
            except InterruptProcessingException:
                logging.info("Processing interrupted")
                self.success = False
                self.add_message("execution_interrupted", {"prompt_id": prompt_id, "node_id": node_id,
                                                           "node_type": class_type, "executed": list(executed)},
                                 broadcast=True)
                break
            except Exception as ex:
                logging.error(f"!!! Exception during processing !!! {ex}")
                logging.error(traceback.format_exc())
                self.success = False
                self.add_message("execution_error", {
                    "prompt_id": prompt_id, "node_id": node_id, "node_type": class_type, "executed": list(executed),
                    "exception_message": f"{ex}\n", "exception_type": full_type_name(type(ex)),
                    "traceback": traceback.format_tb(ex.__traceback__),
                    "current_inputs": {k: [_format_value(v)] for k, v in input_data.items()},
                    "current_outputs": cached_nodes}, broadcast=False)
                break

            ui = returned.get("ui") if isinstance(returned, dict) else None
            outputs = tuple(returned.get("result", ())) if isinstance(returned, dict) else tuple(returned)
            entry = CacheEntry(ui=None, outputs=outputs)
            if ui:
                entry = CacheEntry(ui={"meta": {"node_id": node_id, "display_node": node_id, "parent_node": None,
                                                "real_node_id": node_id}, "output": ui}, outputs=outputs)
                ui_outputs[node_id] = entry.ui
                if server.client_id is not None:
                    server.send_sync("executed", {"node": node_id, "display_node": node_id, "output": ui,
                                                  "prompt_id": prompt_id}, server.client_id)
            results[node_id] = outputs
            self.cache.set(sigs[node_id], entry)
            states[node_id].update(state="finished", value=states[node_id]["max"])
            self._send_progress_state(prompt_id, states)
            executed.add(node_id)
        else:
            self.add_message("execution_success", {"prompt_id": prompt_id}, broadcast=False)

        self.history_result = {"outputs": {k: v["output"] for k, v in ui_outputs.items()},
                               "meta": {k: v["meta"] for k, v in ui_outputs.items()}}
        self.cache.keep_only(set(sigs.values()))
        server.last_node_id = None

    def _progress_hook(self, prompt_id: str, node_id: str, states: dict):
        """main.py's hijack_progress hook and comfy_execution/progress.py's WebUIProgressHandler:
        progress_state, then the preview as type 4 with metadata if the prompt's client announced
        supports_preview_metadata, then progress, then the preview as type 1 if it did not."""
        server = self.server

        def hook(value, total, preview=None):
            model_management.throw_exception_if_processing_interrupted()
            states[node_id].update(state="running", value=value, max=total)
            self._send_progress_state(prompt_id, states)
            with_metadata = server.supports_feature(server.client_id, "supports_preview_metadata")
            if preview is not None and with_metadata:
                metadata = {"node_id": node_id, "prompt_id": prompt_id, "display_node_id": node_id,
                            "parent_node_id": None, "real_node_id": node_id}
                server.send_sync(BinaryEventTypes.PREVIEW_IMAGE_WITH_METADATA, (preview, metadata), server.client_id)
            server.send_sync("progress", {"value": value, "max": total, "prompt_id": prompt_id,
                                          "node": node_id}, server.client_id)
            if preview is not None and not with_metadata:
                server.send_sync(BinaryEventTypes.UNENCODED_PREVIEW_IMAGE, preview, server.client_id)
        return hook
