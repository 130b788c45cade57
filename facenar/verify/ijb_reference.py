"""insightface's IJB procedure as plain loops: the oracle for facenar.verify.ijb_metrics (tests, benchmark).

Written from the published procedure (arcface_torch/eval_ijbc.py for features, pooling, scores and
the TAR table; _evaluation_/ijb/ijb_evals.py's evaluation_1N for 1:N), sharing no code with
ijb_metrics. Far too slow for IJB-C's 23k templates (an np.where over all images per template);
not for production use.
"""
from __future__ import annotations

import numpy as np
from sklearn.metrics import auc, roc_curve
from sklearn.preprocessing import normalize


def reference_features(embs, embs_flip, faceness, keep_norm=True, detector_score=True, flip=True):
    feats = embs + embs_flip if flip else embs
    if not keep_norm:
        feats = feats / np.sqrt(np.sum(feats ** 2, -1, keepdims=True))
    if detector_score:
        feats = feats * faceness[:, np.newaxis]
    return feats


def reference_templates(feats, templates, medias):
    unique_templates = np.unique(templates)
    template_feats = np.zeros((len(unique_templates), feats.shape[1]))
    for count, uqt in enumerate(unique_templates):
        (ind_t,) = np.where(templates == uqt)
        face_feats, face_medias = feats[ind_t], medias[ind_t]
        media_feats = []
        for media, count_in_media in zip(*np.unique(face_medias, return_counts=True)):
            (ind_m,) = np.where(face_medias == media)
            if count_in_media == 1:
                media_feats.append(face_feats[ind_m])
            else:
                media_feats.append(np.mean(face_feats[ind_m], axis=0, keepdims=True))
        template_feats[count] = np.sum(np.array(media_feats), axis=0)
    return unique_templates, normalize(template_feats)


def reference_scores(template_feats, unique_templates, p1, p2, batch=100000):
    template2id = np.zeros((max(unique_templates) + 1, 1), dtype=int)
    for count, uqt in enumerate(unique_templates):
        template2id[uqt] = count
    score = np.zeros((len(p1),))
    pairs = np.arange(len(p1))
    for s in [pairs[i:i + batch] for i in range(0, len(p1), batch)]:
        score[s] = np.sum(template_feats[template2id[p1[s]]] * template_feats[template2id[p2[s]]], -1).flatten()
    return score


def reference_tars(labels, scores, fars):
    """{far: TAR} by insightface's table rule, {far: TAR} strict, and the AUC."""
    fpr, tpr, _ = roc_curve(labels, scores)
    area = auc(fpr, tpr)
    fpr_r, tpr_r = np.flipud(fpr), np.flipud(tpr)
    table = {}
    for far in fars:
        _, index = min(list(zip(abs(fpr_r - far), range(len(fpr_r)))))
        table[far] = float(tpr_r[index])
    full_fpr, full_tpr, _ = roc_curve(labels, scores, drop_intermediate=False)
    strict = {far: float(max(t for f, t in zip(full_fpr, full_tpr) if f <= far)) for far in fars}
    return table, strict, float(area)


def reference_1n(query_feats, gallery_feats, query_ids, reg_ids, fpirs):
    """evaluation_1N: (top1, top5, top10 counts, mated count, {fpir: TPIR})."""
    similarity = np.dot(query_feats, gallery_feats.T)
    top1 = top5 = top10 = 0
    pos_sims, neg_sims, non_gallery_sims = [], [], []
    for index, query_id in enumerate(query_ids):
        if query_id in reg_ids:
            gallery_label = np.argwhere(reg_ids == query_id)[0, 0]
            index_sorted = np.argsort(similarity[index])[::-1]
            top1 += gallery_label in index_sorted[:1]
            top5 += gallery_label in index_sorted[:5]
            top10 += gallery_label in index_sorted[:10]
            pos_sims.append(similarity[index][reg_ids == query_id][0])
            neg_sims.append(similarity[index][reg_ids != query_id])
        else:
            non_gallery_sims.append(similarity[index])
    pos_sims, neg_sims, non_gallery_sims = np.array(pos_sims), np.array(neg_sims), np.array(non_gallery_sims)
    correct = pos_sims > neg_sims.max(1)
    ranked = np.sort(non_gallery_sims.max(1))[::-1]
    recalls = {}
    for fpir in fpirs:
        thresh = ranked[max(int(ranked.shape[0] * fpir) - 1, 0)]
        recalls[fpir] = float(np.logical_and(correct, pos_sims > thresh).sum() / pos_sims.shape[0])
    return int(top1), int(top5), int(top10), len(pos_sims), recalls
