#!/bin/bash
if [ "$(cat /workspace/shout.txt 2>/dev/null)" = "$(shout harbor)" ] && [ "$(shout harbor)" = HARBOR ]; then echo 1 > /logs/verifier/reward.txt; else echo 0 > /logs/verifier/reward.txt; fi
