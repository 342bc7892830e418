"""The three dataflow modes of ch. 3 side by side: run, measure, compare, break.

``core.receipts`` is the measuring stick every consumer writes; ``report`` turns receipts
into figures; ``runner`` starts the producer and consumer processes of one mode;
``modes`` holds one orchestration per mode (each with its consumer-down fault run) and
``compare`` the side-by-side table and results files.
"""
