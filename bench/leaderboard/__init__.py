"""The leaderboard: accepting submitted records (`bench.leaderboard.submit`) and the static site (`bench.leaderboard.site`)."""
