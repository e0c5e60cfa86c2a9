"""Dev experiment: one 20k-image job with expansion under given pool settings; prints stage seconds."""
import json, sys, time
from pathlib import Path
from llmgan.bench import pipeline
from llmgan.job.config import GenerateConfig, StageResources
work = Path("runs/bench_prof"); work.mkdir(parents=True, exist_ok=True)
exp_cpus = float(sys.argv[1]); gen_cpus = float(sys.argv[2]) if sys.argv[2] != "auto" else None
gen_max = int(sys.argv[3]) if sys.argv[3] != "auto" else None
which = sys.argv[4:] or ["ray"]
prompts = pipeline.make_prompts(work / "prompts-20000.parquet", 5000, 4)
for name in which:
    cfg = GenerateConfig(prompts=prompts, out=str(work / f"out-{name}"), expand=True, shard_size=1000, overwrite=True,
                         expander=StageResources(num_cpus=exp_cpus), generator=StageResources(num_cpus=gen_cpus, max_actors=gen_max))
    r = (pipeline.ray_job if name == "ray" else pipeline.baseline_loop)(cfg)
    s = json.loads((work / f"out-{name}" / "_SUCCESS.json").read_text()) if name == "ray" else {}
    print(name, sys.argv[1:4], json.dumps(r), json.dumps({k: v for k, v in s.items() if "second" in k or "stage" in k}), flush=True)
