# gnuplot -e "dir='docs/figures'; bstart=150; cov_alert=352; drift_alert=472" \
#   experiments/calibration/feedback_replay.gp
# (the seconds at which stream B started and the two alerts first fired)
if (!exists("dir")) dir = "docs/figures"
if (!exists("bstart")) bstart = 150
if (!exists("cov_alert")) cov_alert = -1
if (!exists("drift_alert")) drift_alert = -1
set terminal svg size 1100,900 dynamic font "sans,12" background "white" noenhanced
set output dir."/feedback_replay.svg"
set multiplot layout 3,1 title "Feedback replay: UCI concrete, trained on ages <= 28 days; from the dashed line, ages > 28 days (Prometheus, 1 s scrapes)"
set grid
set key outside right top vertical
set xlabel "seconds"
set arrow 1 from bstart, graph 0 to bstart, graph 1 nohead dt 2 lw 2 lc rgb "black"

set title "rolling coverage of the 90% intervals (last 200 observations); McdropCoverageOff fires outside [0.85, 0.95]"
set ylabel "coverage"
set yrange [0:1.02]
if (cov_alert >= 0) set arrow 2 from cov_alert, graph 0 to cov_alert, graph 1 nohead lw 2 lc rgb "red"; \
  set label 2 "McdropCoverageOff firing (static server)" at cov_alert, graph 0.08 offset 0.5,0 tc rgb "red"
plot dir."/feedback_replay.dat" u 1:2 w l lw 2 t "mixture (MC dropout)", \
     "" u 1:3 w l lw 2 t "conformal, static", \
     "" u 1:4 w l lw 2 t "conformal, ACI (rate 0.05)", \
     0.9 w l dt 3 lc rgb "gray" t "nominal", \
     0.85 w l dt 2 lc rgb "red" t "alert band", \
     0.95 w l dt 2 lc rgb "red" notitle

unset arrow 2
unset label 2
set title "adaptive conformal inference: calibration level in force for the nominal 90% (above 1: the interval is unbounded)"
set ylabel "level"
set yrange [*:*]
plot dir."/feedback_replay.dat" u 1:5 w l lw 2 t "1 - alpha_t"

if (drift_alert >= 0) set arrow 3 from drift_alert, graph 0 to drift_alert, graph 1 nohead lw 2 lc rgb "red"; \
  set label 3 "McdropInputDrift firing" at drift_alert, graph 0.9 offset 0.5,0 tc rgb "red"
set title "input drift and predictive uncertainty"
set ylabel "share / MPa"
set y2label "median predictive std (MPa)"
set y2tics
set ytics nomirror
plot dir."/feedback_replay.dat" u 1:6 w l lw 2 t "inputs beyond 4 training std (10 min)", \
     "" u 1:7 axes x1y2 w l lw 2 t "median predictive std (1 min)"
unset multiplot
