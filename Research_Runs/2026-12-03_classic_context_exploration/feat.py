import sys, time, json
import numpy as np
sys.path.insert(0, '/work/main')
from pipeline.core.config import load_config
from pipeline.data import tasks as tasks_mod, paths, morphology
from pipeline.training import classic, run_folder
from pipeline.evaluation.metrics import single_label_metrics

def centred(values, k, fn):
    n = len(values); out = np.empty(n)
    for i in range(n):
        out[i] = fn(values[max(0, i-k): i+k+1])
    return out

def extra(w, fs=360.0):
    r = w['beat_sample'] / fs
    pre = np.concatenate([[r[1]-r[0]], np.diff(r)]) if len(r) > 1 else np.ones(len(r))
    post = np.concatenate([np.diff(r), [pre[-1]]]) if len(r) > 1 else np.ones(len(r))
    post2 = np.concatenate([post[1:], [post[-1]]])
    prev = np.concatenate([pre[:1], pre[:-1]])
    cmed = centred(pre, 10, np.median)
    rmed = np.median(pre)
    irr = centred(np.abs(np.diff(np.concatenate([pre[:1], pre]))), 10, np.mean) / cmed
    cols = {
        'pre_over_cmed': pre / cmed, 'post_over_cmed': post / cmed,
        'pre_over_recmed': pre / rmed, 'post_over_recmed': post / rmed,
        'post2_over_cmed': post2 / cmed, 'prev_over_cmed': prev / cmed,
        'rr_irregularity': irr, 'pre_minus_prev': (pre - prev) / cmed,
        'pre_plus_post_over_cmed': (pre + post) / (2 * cmed),
        'irr_med10': centred(np.abs(np.diff(np.concatenate([pre[:1], pre]))), 10, np.median) / cmed,
        'irr_mean5': centred(np.abs(np.diff(np.concatenate([pre[:1], pre]))), 5, np.mean) / centred(pre, 5, np.median),
        'irr_mean20': centred(np.abs(np.diff(np.concatenate([pre[:1], pre]))), 20, np.mean) / centred(pre, 20, np.median),
        'irr_mean40': centred(np.abs(np.diff(np.concatenate([pre[:1], pre]))), 40, np.mean) / centred(pre, 40, np.median),
        'irr_med20': centred(np.abs(np.diff(np.concatenate([pre[:1], pre]))), 20, np.median) / centred(pre, 20, np.median),
        'irr_mean60': centred(np.abs(np.diff(np.concatenate([pre[:1], pre]))), 60, np.mean) / centred(pre, 60, np.median),
        'irr_mean100': centred(np.abs(np.diff(np.concatenate([pre[:1], pre]))), 100, np.mean) / centred(pre, 100, np.median),
        'irr_med40': centred(np.abs(np.diff(np.concatenate([pre[:1], pre]))), 40, np.median) / centred(pre, 40, np.median),
        'irr_rec': np.full(len(pre), np.mean(np.abs(np.diff(pre))) / rmed),
        'irr_std10': centred(pre, 10, np.std) / cmed,
    }
    idx = np.searchsorted(w['beat_sample'], w['segment_sample'])
    X = np.stack([cols[k][idx] for k in cols], axis=1)
    # morphology neighbours
    seg = w['segments'].astype(np.float64)
    seg = seg - np.median(seg, axis=1, keepdims=True)
    c = seg.shape[1] // 2
    def sp(a, b): return slice(c + int(a*fs/1000), c + int(b*fs/1000))
    def corr(a, b):
        a = a - a.mean(1, keepdims=True); b = b - b.mean(1, keepdims=True)
        d = np.sqrt((a*a).sum(1) * (b*b).sum(1)); return np.where(d > 1e-12, (a*b).sum(1)/np.maximum(d, 1e-12), 0)
    q = sp(-60, 60); p = sp(-250, -80); wh = sp(-250, 400)
    prevseg = np.concatenate([seg[:1], seg[:-1]]); nextseg = np.concatenate([seg[1:], seg[-1:]])
    dom = (np.abs(cols['pre_over_cmed'][idx] - 1) < 0.1) & (np.abs(cols['post_over_cmed'][idx] - 1) < 0.1)
    tmpl = np.median(seg[dom] if dom.sum() > 10 else seg, axis=0)
    pe = np.mean(seg[:, p]**2, axis=1); pe = pe / max(np.median(pe), 1e-12)
    m2 = {
        'corr_prev_qrs': corr(seg[:, q], prevseg[:, q]), 'corr_next_qrs': corr(seg[:, q], nextseg[:, q]),
        'corr_prev_whole': corr(seg[:, wh], prevseg[:, wh]),
        'corr_prev_p': corr(seg[:, p], prevseg[:, p]),
        'dom_corr_whole': corr(seg[:, wh], np.broadcast_to(tmpl[wh], seg[:, wh].shape)),
        'dom_corr_p': corr(seg[:, p], np.broadcast_to(tmpl[p], seg[:, p].shape)),
        'dom_corr_qrs': corr(seg[:, q], np.broadcast_to(tmpl[q], seg[:, q].shape)),
        'p_energy_ratio': pe,
    }
    names = list(cols) + list(m2)
    return np.nan_to_num(np.concatenate([X, np.stack([m2[k] for k in m2], 1)], 1)).astype(np.float32), names

def main():
    cfg = load_config(None, {"data": {"ptbxl_max_records": 500}})
    task = tasks_mod.get_task('mitdb_aami5_segments_rhythm')
    split = run_folder.make_split(cfg, task)
    recs = sorted(set(split.train) | set(split.val))
    wdir = paths.windows_dir(cfg, 'mitdb')
    base = classic.load_table(wdir, recs, cfg.windows.segment_fs_hz)
    ex = []; names = None
    for r in recs:
        x, names = extra(np.load(wdir / f'{r}.npz'))
        ex.append(x)
    ex = np.concatenate(ex)
    np.savez('/tmp/explore/table.npz', x=base.x, y=base.y, record=base.record, ex=ex,
             names=np.array(base.feature_names), exnames=np.array(names))
    json.dump([[list(a), list(b)] for a, b in split.folds], open('/tmp/explore/folds.json', 'w'))
    print(len(base.y), ex.shape, np.bincount(base.y))

main()
