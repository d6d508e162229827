"""Which sentiment fine-tune epoch ``--best-epoch`` keeps, and ``--min-tweeteval-val``'s floor on it."""

from __future__ import annotations

from models.train import replaces_best_epoch


def test_a_higher_score_replaces_the_best_without_a_floor() -> None:
    assert replaces_best_epoch(1, 0.76, 0.70, best_score=0.75, min_tweeteval_val=None)
    assert not replaces_best_epoch(1, 0.74, 0.80, best_score=0.75, min_tweeteval_val=None)


def test_an_epoch_under_the_tweeteval_floor_is_never_kept_however_it_scores() -> None:
    assert not replaces_best_epoch(1, 0.90, 0.72, best_score=0.70, min_tweeteval_val=0.725)
    assert replaces_best_epoch(2, 0.90, 0.725, best_score=0.70, min_tweeteval_val=0.725)


def test_the_starting_branch_stays_eligible_so_there_is_always_one_to_keep() -> None:
    assert replaces_best_epoch(0, 0.60, 0.50, best_score=-1.0, min_tweeteval_val=0.725)
