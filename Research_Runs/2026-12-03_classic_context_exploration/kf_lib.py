import sys, json, time
sys.path.insert(0, '/work/main')
import numpy as np
from pipeline.core.config import load_config
from pipeline.data import tasks as tasks_mod, paths
from pipeline.training import classic, run_folder
cfg = load_config(None, {"data": {"ptbxl_max_records": 500}})
task = tasks_mod.get_task('mitdb_aami5_segments_rhythm')
split = run_folder.make_split(cfg, task)
t0 = time.time()
both = classic.load_table(paths.windows_dir(cfg, 'mitdb'), sorted(set(split.train) | set(split.val)), cfg.windows.segment_fs_hz)
print('table', both.x.shape, round(time.time() - t0, 1), 's', flush=True)
grid = [g for g in classic.GRID if g['features'] in sys.argv[1:] and g['model'] == 'hgb' and g['max_leaf_nodes'] == 31 and g['class_weight_power'] == 1.0]
sel = classic.select_kfold(both, split.folds, list(task.classes), 0, grid)
for r in sel.rows: print(r['features'], round(r['kfold_macro_f1'], 3), {k: round(v, 3) for k, v in r['kfold_f1'].items()})
