#!/bin/bash
if [ -f /workspace/out.txt ] && cmp -s /opt/greeting.txt /workspace/out.txt; then echo 1 > /logs/verifier/reward.txt; else echo 0 > /logs/verifier/reward.txt; fi
