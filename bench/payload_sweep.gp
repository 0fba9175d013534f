# Plots the payload sweep of scripts/bench: time per message, throughput and
# the coproc/raw ratio against payload size, with the rounds' min-max range,
# the 64 KiB threshold above which payloads go through shared memory, and
# the peers (coproc::Blob messages, a ZeroMQ PAIR socket over ipc).
# Called by scripts/bench with datafile and outfile set. Columns: bytes
# raw_us coproc_us raw_GBps coproc_GBps raw_min raw_max coproc_min
# coproc_max blob_GBps zmq_GBps.
set terminal pngcairo size 1500,480 font ",10"
set output outfile
set multiplot layout 1,3 title "coproc vs raw socketpair: one-way message + 1-byte ack, both processes on one CPU (medians; bars: min-max of the rounds)"
set logscale x 2
set xrange [10:28000000]
set xlabel "payload"
set xtics ("16 B" 16, "256 B" 256, "4 KiB" 4096, "64 KiB" 65536, "1 MiB" 1048576, "16 MiB" 16777216)
set grid
set key top left
set arrow 1 from 65536, graph 0 to 65536, graph 1 nohead dashtype 2 linecolor rgb "gray40"
set label 1 "shared memory from 64 KiB" at 70000, graph 0.06 textcolor rgb "gray40"

set logscale y 10
set ylabel "time per message (µs)"
plot datafile using 1:2 with linespoints title "raw socketpair", \
     datafile using 1:3 with linespoints title "coproc PriorityMessenger"

set ylabel "throughput (GB/s)"
set key top left
set yrange [*:1000]  # room above the curves for the key
plot datafile using 1:4:6:7 with yerrorlines title "raw socketpair", \
     datafile using 1:5:8:9 with yerrorlines title "coproc PriorityMessenger<std::string>", \
     datafile using 1:($10 > 0 ? $10 : NaN) with linespoints title "coproc PriorityMessenger<Blob>", \
     datafile using 1:($11 > 0 ? $11 : NaN) with linespoints title "ZeroMQ PAIR (ipc)"

unset logscale y
set yrange [0:*]
set ylabel "throughput ÷ raw socketpair (same run)"
set key top left
plot 1 with lines dashtype 3 linecolor rgb "black" title "raw = 1", \
     datafile using 1:($5 / $4) with linespoints title "coproc <std::string>", \
     datafile using 1:($10 > 0 ? $10 / $4 : NaN) with linespoints title "coproc <Blob>", \
     datafile using 1:($11 > 0 ? $11 / $4 : NaN) with linespoints title "ZeroMQ PAIR"
unset multiplot
