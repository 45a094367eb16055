"""The one stream runtime of every long-running process: processors, sinks, connector, 中間サーバー and network.

Built on confluent-kafka (librdkafka). For each batch a :class:`~hub.engine.runner.Runner`:

1. consumes what is there (it returns as soon as one message is, never waiting for a full batch);
2. decodes it with the registry-aware serde (one parse per schema id);
3. acts inside ONE SQL transaction on the process's own store, through its :class:`~hub.engine.handler.Handler`,
   and stores in that same transaction the batch's encoded outputs (the outbox) and the next offset of each
   partition it read;
4. commits the transaction;
5. produces the outputs and waits until the broker has acknowledged every one;
6. only then commits the offsets to Kafka.

A replay (a crash anywhere, a rebalance) finds the stored offsets: a message at or past them is acted on, one below
them is not acted on again and its stored outputs are re-sent instead. See ``hub/engine/README.md``.
"""
