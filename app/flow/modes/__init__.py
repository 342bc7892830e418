"""One orchestration per dataflow mode: start its consumer and producer processes, measure."""
