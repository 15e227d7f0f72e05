"""The processing stages, pure (a dataset in, a dataset out; no storage, no network).

``deid`` (header de-identification) -> ``eyes`` (analyse: landmarks, quality gates, measurements) ->
``mask`` (fit the avatar, render it) -> ``dicom`` (decode, encode, private block) -> ``route``;
``process`` chains them for one instance. ``errors`` and ``imaging`` are shared by all.
"""
