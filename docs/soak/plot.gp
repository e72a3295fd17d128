# Plots a soak run (TestSoak's samples.csv): RSS of each botq process, and
# the p99 of enqueue-to-delivery latency, over the run.
#   gnuplot -e "in='samples.csv'; out='docs/soak'" docs/soak/plot.gp
# (make soak/plot SOAK_OUT=dir does this for a run's directory.)
if (!exists("in")) in = 'samples.csv'
if (!exists("out")) out = '.'
if (!exists("label")) label = ''
set datafile separator ","
set terminal pngcairo size 960,420 font "sans,10"
set grid
set xlabel "minutes"
set key top left

set output out.'/soak-rss.png'
set title "RSS of each botq serve process (60 actions/s, bursts of 5,000)".label
set ylabel "MB"
set yrange [0:160]
plot in using ($1/60):(column("p0_rss_mb")) with lines lw 2 title "p0 RSS", \
     in using ($1/60):(column("p1_rss_mb")) with lines lw 2 title "p1 RSS", \
     in using ($1/60):(column("p0_heap_inuse_mb")) with lines lw 1 dt 2 title "p0 Go heap in use", \
     in using ($1/60):(column("p1_heap_inuse_mb")) with lines lw 1 dt 2 title "p1 Go heap in use", \
     150 with lines lc rgb "red" dt 3 title "bound: 150 MB"

set output out.'/soak-latency.png'
set title "Enqueue to delivery (Bot v3 call answered), per sample".label
set ylabel "ms"
set yrange [0:*]
set logscale y
set yrange [5:*]
plot in using ($1/60):(column("latency_p99_ms") > 0 ? column("latency_p99_ms") : NaN) with lines lw 2 title "p99", \
     in using ($1/60):(column("latency_p50_ms") > 0 ? column("latency_p50_ms") : NaN) with lines lw 1 title "p50"
