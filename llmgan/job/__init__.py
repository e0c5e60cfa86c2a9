"""The bulk generation job without Ray: settings, pre-flight checks, shard plan, stages, shard writing, the driver
(resume, retries, summary) and the one-process executor; llmgan.distributed adds the Ray executor."""
