package console

import (
	"fmt"
	"time"

	"github.com/botq/botq/store"
)

// plot is the overview's throughput chart, drawn as SVG by the template
// (no script): per interval, a bar of actions enqueued beside a bar of
// calls, those Khoros accepted below those that failed. Its table holds the
// same figures for screen readers and for copying.
type plot struct {
	Width, Height int
	Bars          []plotBar
	Ticks         []plotTick
	Max           int64
	Step          string
	Buckets       []store.ThroughputBucket
	Label         string
}

// plotBar is one interval's bars, in the SVG's units.
type plotBar struct {
	Title                   string
	EnqX, CallX, W          int
	EnqY, EnqH              int
	OKY, OKH, FailY, FailH  int
	Start                   time.Time
	Enqueued, OK, Failed    int64
	HasEnq, HasOK, HasFails bool
}

// plotTick labels the time axis.
type plotTick struct {
	X     int
	Label string
}

const (
	plotHeight = 160 // the bars' area
	plotSlot   = 30  // one interval's width
	plotLeft   = 40  // room for the scale
	plotBottom = 20  // room for the time axis
)

func newPlot(buckets []store.ThroughputBucket, step time.Duration) *plot {
	p := &plot{Step: roughDuration(step), Buckets: buckets, Height: plotHeight + plotBottom, Width: plotLeft + plotSlot*len(buckets)}
	for _, b := range buckets {
		p.Max = max(p.Max, b.Enqueued, b.CallsOK+b.CallsFailed)
	}
	scale := func(n int64) int {
		if p.Max == 0 {
			return 0
		}
		return int(n * plotHeight / p.Max)
	}
	var enq, ok, failed int64
	for i, b := range buckets {
		x := plotLeft + i*plotSlot
		bar := plotBar{Start: b.Start, Enqueued: b.Enqueued, OK: b.CallsOK, Failed: b.CallsFailed,
			EnqX: x + 3, CallX: x + 15, W: 11,
			Title: fmt.Sprintf("%s: %d enqueued, %d calls accepted, %d failed", b.Start.UTC().Format("15:04"), b.Enqueued, b.CallsOK, b.CallsFailed)}
		bar.EnqH = scale(b.Enqueued)
		bar.EnqY = plotHeight - bar.EnqH
		bar.OKH = scale(b.CallsOK)
		bar.OKY = plotHeight - bar.OKH
		bar.FailH = scale(b.CallsFailed)
		bar.FailY = bar.OKY - bar.FailH
		bar.HasEnq, bar.HasOK, bar.HasFails = b.Enqueued > 0, b.CallsOK > 0, b.CallsFailed > 0
		p.Bars = append(p.Bars, bar)
		if b.Start.Minute() == 0 {
			p.Ticks = append(p.Ticks, plotTick{X: x, Label: b.Start.UTC().Format("15:04")})
		}
		enq, ok, failed = enq+b.Enqueued, ok+b.CallsOK, failed+b.CallsFailed
	}
	p.Label = fmt.Sprintf("Throughput, %s bars: %d actions enqueued, %d calls accepted by Khoros, %d calls failed", p.Step, enq, ok, failed)
	return p
}
