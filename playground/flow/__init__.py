"""The three dataflow modes of ch. 3 side by side: run, measure, compare, break.

``receipts`` is the measuring stick every consumer writes; ``report`` turns receipts
into figures; ``runner`` starts the producer and consumer processes of one mode;
``modes`` holds one orchestration per mode, ``faults`` the consumer-down runs and
``compare`` the side-by-side table and results files.
"""
