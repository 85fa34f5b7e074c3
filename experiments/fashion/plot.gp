# gnuplot -e "dir='docs/figures'" experiments/fashion/plot.gp
if (!exists("dir")) dir = "docs/figures"
set terminal svg size 1100,820 dynamic font "sans,12" background "white" noenhanced
set output dir."/fashion_uncertainty.svg"
set multiplot layout 2,2 title "MC dropout LeNet on a rotated Fashion-MNIST test item (mcdrop-server, T = 100)"
set grid
set key outside bottom center horizontal
set xlabel "rotation (degrees)"
set xrange [0:180]
set xtics 30
do for [m in "fashion_lenet fashion_lenet_all"] {
  f = dir."/fashion_rotation_".m.".dat"
  set title m.": MC mean probabilities (solid) vs dropout-off softmax (dashed)"
  set ylabel "probability"
  set yrange [0:1.05]
  plot f u 1:2 w lp lw 2 pt 7 lc 1 t columnhead(2), "" u 1:4 w lp lw 2 pt 7 lc 2 t columnhead(4), \
       "" u 1:6 w lp lw 2 pt 7 lc 3 t columnhead(6), "" u 1:3 w l dt 2 lw 2 lc 1 t columnhead(3), \
       "" u 1:5 w l dt 2 lw 2 lc 2 t columnhead(5), "" u 1:7 w l dt 2 lw 2 lc 3 t columnhead(7)
  set title m.": uncertainty"
  set ylabel "nats / ratio"
  set yrange [0:*]
  plot f u 1:8 w lp lw 2 pt 7 t "predictive entropy", "" u 1:9 w lp lw 2 pt 5 t "mutual information", \
       "" u 1:10 w lp lw 2 pt 9 t "variation ratio"
}
unset multiplot
