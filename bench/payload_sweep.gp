# Plots time per message and throughput against payload size, coproc vs raw.
# Called by scripts/bench with datafile and outfile set.
set terminal pngcairo size 1100,450 font ",10"
set output outfile
set multiplot layout 1,2 title "coproc vs raw socketpair (one-way message + 1-byte ack, both processes on one CPU)"
set logscale x 2
set xrange [12:22000000]
set logscale y 10
set xlabel "payload"
set xtics ("16 B" 16, "256 B" 256, "4 KiB" 4096, "64 KiB" 65536, "1 MiB" 1048576, "16 MiB" 16777216)
set grid
set key top left
set ylabel "time per message (µs)"
plot datafile using 1:2 with linespoints title "raw socketpair", datafile using 1:3 with linespoints title "coproc PriorityMessenger"
set ylabel "throughput (GB/s)"
plot datafile using 1:4 with linespoints title "raw socketpair", datafile using 1:5 with linespoints title "coproc PriorityMessenger"
unset multiplot
