#!/bin/bash
awk '{s += $1} END {print s}' /data/numbers.txt > sum.txt
