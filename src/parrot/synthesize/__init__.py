"""Synthesis: a user simulator talks with an assistant model, and what is done with the sessions.

``stage`` is ``parrot synthesize``; ``session`` a session and its rules; ``writer`` what a run
keeps; ``loops`` the batched and the concurrent loop; ``journal`` the messages of the sessions in
flight; ``roleswap`` the simulator's view of a conversation (also what train-ask trains on);
``merge`` joins the shards of a sharded run; ``info`` reads back what they wrote, for the stages
that measure it (``parrot filter`` is :mod:`parrot.filter`)."""
