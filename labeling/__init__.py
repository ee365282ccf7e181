"""labeling: the Label Studio bridge -- push selected examples, pull verified labels, agreement.

Reads and writes the store through `curation`; never imports `training` or `selection`.

Modules:
    interface   the labeling config (single choice over the label set) and the per-task HTML
                that shows each text with its language and reading direction (rtl for Arabic,
                Hebrew, Persian, Urdu...)
    client      the few Label Studio calls made, through the SDK (legacy token or personal
                access token), retried with backoff on network errors and 5xx
    push        `curate push`: a round as tasks, in active-learning order (uncertainty sampling),
                per-language overlap, gold tasks, exactly once (reconciled by example id)
    pull        `curate pull`: annotations mirrored (updates, deletions), labels resolved,
                agreement per language and annotator accuracy on gold stored for the dashboard
    resolve     majority vote with a minimum agreement; ties and low agreement to adjudication
    agreement   Krippendorff's alpha (nominal), Fleiss' kappa, percent agreement
    adjudicate  `curate adjudicate`: the queue, and a person's final label

The server for development, tests and benchmarks: scripts/labelstudio.sh (its own virtualenv).
Offline, `curate push --to FILE` and `curate pull --from FILE` use Label Studio's JSON import and
export formats.
"""
