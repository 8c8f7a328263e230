import sys, json, time
import numpy as np
sys.path.insert(0, '/work/main')
from pipeline.training import classic
from pipeline.evaluation.metrics import single_label_metrics
d = np.load('/tmp/explore/table.npz'); folds = json.load(open('/tmp/explore/folds.json'))
names = list(d['names']); exn = list(d['exnames'])
base_cols = classic.feature_columns(names, 'relative+template')
classes = ['N', 'S', 'V', 'F', 'Q']
setting = dict(model='hgb', learning_rate=0.1, max_leaf_nodes=31, n_trees=200, class_weight_power=1.0)
def run(extra_names, label):
    X = np.concatenate([d['x'][:, base_cols], d['ex'][:, [exn.index(e) for e in extra_names]]], 1)
    y = d['y']; rec = d['record']; probs = np.zeros((len(y), 5))
    for tr, ho in folds:
        m = classic.make_trees(setting, 0)
        t = np.isin(rec, tr); h = np.isin(rec, ho)
        m.fit(X[t], y[t], sample_weight=classic.sample_weights(y[t], 5, 1.0))
        probs[np.ix_(h, m.classes_)] = m.predict_proba(X[h])
    r = single_label_metrics(y, probs, classes)
    f = {c: round(r['per_class'][c]['f1'], 3) for c in classes}
    print(f"{label:40s} macro {r['macro_f1']:.3f} S {f['S']} V {f['V']} F {f['F']} Se(S) {r['per_class']['S']['sensitivity']:.3f} +P(S) {r['per_class']['S']['ppv']:.3f}", flush=True)
groups = {
 'base': [],
 'rr_cmed': ['pre_over_cmed', 'post_over_cmed', 'prev_over_cmed'],
 'rr_recmed': ['pre_over_recmed', 'post_over_recmed'],
 'post2': ['post2_over_cmed'],
 'irr': ['rr_irregularity', 'pre_minus_prev', 'pre_plus_post_over_cmed'],
 'neigh': ['corr_prev_qrs', 'corr_next_qrs', 'corr_prev_whole', 'corr_prev_p'],
 'dom': ['dom_corr_whole', 'dom_corr_p', 'dom_corr_qrs'],
 'pe': ['p_energy_ratio'],
 'irr1': ['rr_irregularity'], 'med10': ['irr_med10'], 'mean5': ['irr_mean5'], 'mean20': ['irr_mean20'], 'std10': ['irr_std10'], 'mean40': ['irr_mean40'], 'med20': ['irr_med20'], 'mean60': ['irr_mean60'], 'mean100': ['irr_mean100'], 'med40': ['irr_med40'], 'rec': ['irr_rec'], 'irr2': ['pre_minus_prev'], 'irr3': ['pre_plus_post_over_cmed'],
}
sel = sys.argv[1:] or list(groups)
for g in sel:
    if '+' in g: run(sum((groups[k] for k in g.split('+')), []), g)
    else: run(groups[g], g)
