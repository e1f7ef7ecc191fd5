"""The built-in metrics' report figures: each ``draw(view, dataset)`` callable of a
``FigureSpec`` (:mod:`.paper`: ROC, correlation, augmentation, time; :mod:`.cells`: UMAP and marker
genes; :mod:`.suite`: PRDC, memorisation, per type, DE recovery). Drawing never changes a value, so
this package is left out of the scoring code hash (``bench.codeversion.NOT_SCORING``): editing a
figure reruns no task."""
