"""Entry point of the fake ComfyUI: `python main.py --listen 127.0.0.1 --port N [ComfyUI flags]`.

Follows the start-up of ComfyUI 0.3.76's main.py: parse flags (argparse exits 2 on a bad one),
set up logging, apply directory flags, rewrite CUDA_VISIBLE_DEVICES for --cuda-device, "import"
the device (model_management), print versions, create the server, scan custom_nodes, start the
prompt worker thread, bind, serve. Ctrl-C (SIGINT) logs "Stopped server" and exits 0.
"""

import os
import sys

# What the launcher handed us, before --cuda-device / --default-device rewrite it.
RECEIVED_CUDA_VISIBLE_DEVICES = os.environ.get("CUDA_VISIBLE_DEVICES")

import comfy.options

comfy.options.enable_args_parsing()

import asyncio
import logging
import shutil
import signal
import subprocess
import threading
import time

import knobs as knobs_module
from app.logger import setup_logger
from comfy.cli_args import args

try:
    KNOBS = knobs_module.from_env()
except knobs_module.KnobError as exc:
    print(f"fake ComfyUI: {exc}", file=sys.stderr)
    sys.exit(2)

setup_logger(log_level=args.verbose, use_stdout=args.log_stdout)

if KNOBS.ignore_sigint:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
if KNOBS.ignore_sigterm:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)

import folder_paths

folder_paths.apply_base_directory(args)
folder_paths.apply_custom_paths(args)

if __name__ == "__main__":
    if args.default_device is not None:
        order = [args.default_device] + [d for d in range(32) if d != args.default_device]
        os.environ["CUDA_VISIBLE_DEVICES"] = os.environ["HIP_VISIBLE_DEVICES"] = ",".join(map(str, order))
    if args.cuda_device is not None:
        for name in ("CUDA_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES", "ASCEND_RT_VISIBLE_DEVICES"):
            os.environ[name] = str(args.cuda_device)
        logging.info(f"Set cuda device to: {args.cuda_device}")

from comfy import model_management

DEVICE = model_management.init(args, KNOBS)  # raises (exit 1, traceback) where real torch would

import comfyui_version
import execution
import nodes
import server


def prompt_worker(queue: execution.PromptQueue, server_instance: server.PromptServer) -> None:
    """One job at a time, in queue order, on its own thread (ComfyUI's prompt_worker)."""
    if args.cache_lru > 0:
        executor = execution.PromptExecutor(server_instance, KNOBS, "lru", args.cache_lru)
    else:
        executor = execution.PromptExecutor(server_instance, KNOBS, "none" if args.cache_none else "classic")
    job_number = 0
    while True:
        queued = queue.get(timeout=1000.0)
        if queued is not None:
            item, item_id = queued
            job_number += 1
            started = time.perf_counter()
            prompt_id = item[1]
            server_instance.last_prompt_id = prompt_id
            extra_data = {**item[3], **item[5]}
            executor.execute(item[2], prompt_id, extra_data, item[4], job_number)
            queue.task_done(item_id, executor.history_result, status=execution.ExecutionStatus(
                status_str="success" if executor.success else "error", completed=executor.success,
                messages=executor.status_messages))
            if server_instance.client_id is not None:
                server_instance.send_sync("executing", {"node": None, "prompt_id": prompt_id},
                                          server_instance.client_id)
            elapsed = time.perf_counter() - started
            if elapsed > 600:
                logging.info(f"Prompt executed in {time.strftime('%H:%M:%S', time.gmtime(elapsed))}")
            else:
                logging.info(f"Prompt executed in {elapsed:.2f} seconds")

        flags = queue.get_flags()
        if flags.get("free_memory", False):
            executor.reset()


def cleanup_temp() -> None:
    if os.path.exists(folder_paths.temp_directory):
        shutil.rmtree(folder_paths.temp_directory, ignore_errors=True)


def spawn_grandchild() -> None:
    """FAKE_COMFYUI_SPAWN_CHILD: a sleeper in our process group holding our stdout/stderr, like a
    custom node's helper process. A launcher that stops only our pid leaves it behind."""
    if KNOBS.child_setsid:
        # A daemon: it leaves our group and session, its parent exits at once (so it is an
        # orphan), and it shrugs off SIGTERM and SIGHUP. Only its own pid file says where it is.
        code = (
            "import os, signal, sys, time\n"
            "signal.signal(signal.SIGTERM, signal.SIG_IGN); signal.signal(signal.SIGHUP, signal.SIG_IGN)\n"
            "os.setsid()\n"
            "if os.fork(): os._exit(0)\n"
            "path = sys.argv[1]\n"
            "if path:\n"
            "    open(path + '.tmp', 'w').write(f'{os.getpid()}\\n'); os.replace(path + '.tmp', path)\n"
            "time.sleep(3600)\n"
        )
        middle = subprocess.Popen([sys.executable, "-c", code, KNOBS.child_pidfile or ""], stdin=subprocess.DEVNULL)
        middle.wait()
        logging.info("FAKE_COMFYUI_SPAWN_CHILD: started a daemonized grandchild (setsid, double fork)")
        return
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"], stdin=subprocess.DEVNULL)
    if KNOBS.child_pidfile:
        with open(KNOBS.child_pidfile, "w") as f:
            f.write(f"{child.pid}\n")
    logging.info(f"FAKE_COMFYUI_SPAWN_CHILD: started grandchild pid {child.pid}")


def start_comfyui():
    if args.temp_directory:
        temp_dir = os.path.join(os.path.abspath(args.temp_directory), "temp")
        logging.info(f"Setting temp directory to: {temp_dir}")
        folder_paths.set_temp_directory(temp_dir)
    cleanup_temp()

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    prompt_server = server.PromptServer(loop, args, RECEIVED_CUDA_VISIBLE_DEVICES)
    nodes.init_extra_nodes(KNOBS, DEVICE)
    if KNOBS.spawn_child:
        spawn_grandchild()
    prompt_server.add_routes()
    threading.Thread(target=prompt_worker, daemon=True, args=(prompt_server.prompt_queue, prompt_server)).start()

    if args.quick_test_for_ci:
        sys.exit(0)
    os.makedirs(folder_paths.temp_directory, exist_ok=True)

    async def start_all():
        addresses = [(address, args.port) for address in args.listen.split(",")]
        await asyncio.gather(prompt_server.start_multi_address(addresses, verbose=not args.dont_print_server),
                             prompt_server.publish_loop())

    return loop, prompt_server, start_all


if __name__ == "__main__":
    logging.info(f"Python version: {sys.version}")
    logging.info(f"ComfyUI version: {comfyui_version.__version__}")
    event_loop, _, start_all_func = start_comfyui()
    try:
        event_loop.run_until_complete(start_all_func())
    except KeyboardInterrupt:
        logging.info("\nStopped server")
    cleanup_temp()
