#!/bin/bash
shout harbor > shout.txt
