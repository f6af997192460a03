#!/bin/bash
cp /opt/greeting.txt out.txt
