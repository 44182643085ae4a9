"""Batch queueing of workflows through ComfyUI's HTTP API: sweeps, resume, several servers.

Run as ``python -m wan_queue run WORKFLOW.json ...`` / ``python -m wan_queue status OUT`` (docs/QUEUE.md).
It talks HTTP and WebSocket only: nothing here imports ComfyUI or torch.
"""
