"""JOB files: a training run described in YAML, for ``guardtrain check|fit JOB``.

```yaml
model: tiny_model:build_model        # module:function returning a compiled keras.Model
data:                                # one of: npz / parquet / dataset_fn
  npz: tiny.npz                      #   paths are relative to this file
  x: x_train
  y: y_train
validation: {npz: tiny.npz, x: x_val, y: y_val}     # optional: npz or parquet
batch_size: 64
epochs: 3
guard: {warmup_steps: 20, window_steps: 40}         # GuardConfig fields, or false
rescue: {max_attempts: 4}                           # RescueConfig fields, or false
launch: {workers: 0, cpu_replicas: 2}               # LaunchConfig fields
```

Reading a JOB file runs nothing it contains: the only code that runs is the module an
import path names, imported as Python imports it. One module per concern:

```
reading      the YAML (safe loader, yaml_value) and the --set overrides
schema       the keys and values allowed, checked without importing anything
resolution   import paths, npz/Parquet data, the modules Ray workers need sent
problems     the codes GT130-GT136 and the one ConfigError listing every problem
spec         parse_job -> JobSpec -> Job
```
"""

from guardtrain.interface.jobfile.reading import parse_override, yaml_value
from guardtrain.interface.jobfile.resolution import resolve_import_path
from guardtrain.interface.jobfile.schema import TOP_KEYS
from guardtrain.interface.jobfile.spec import Job, JobSpec, load_job, parse_job, user_modules

__all__ = ["JobSpec", "Job", "parse_job", "load_job", "parse_override", "resolve_import_path",
           "user_modules", "yaml_value", "TOP_KEYS"]
