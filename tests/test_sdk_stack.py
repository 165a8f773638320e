"""The SDK against the real stack: events on Kafka from predict/update, and the seed README's example."""

from __future__ import annotations

from typing import Any

import pytest

from maximum_continual import MaximumContinual
from maximum_continual.types import MessageT, PredictionResponseWithRewardT
from producers import EventConsumer
from schemas.events import PredictionEvent, RewardEvent
from schemas.topics import TopicKey
from tests.test_inference_fixtures import running_node
from tests.test_sdk_agent import FinalAnswer, ScriptedLLM, code


def read_back(settings, key, etype, group_id, want: int) -> list[Any]:
    with EventConsumer(key, etype, group_id=group_id, settings=settings) as consumer:
        return [c.event for c in consumer.events(idle_timeout_s=10, max_events=want)]


@pytest.mark.kafka
def test_predict_and_update_publish_the_events_the_trainer_needs(topics, group_id, model_id):
    settings = topics()
    mid = model_id()
    script = [code("x = 6 * 7\nprint(x)"), code("final_answer(answer=str(x), reasoning='multiplied')")]
    client = MaximumContinual(
        auto_deploy=False, llm=lambda: ScriptedLLM(list(script)), inference_url=None, topic_prefix=settings.topic_prefix
    )
    with client, client.init_model(mid) as model:
        response = model.predict(
            [MessageT(role="user", content="What is 6 times 7?")], tools=[], final_answer_model=FinalAnswer
        )
        model.update([PredictionResponseWithRewardT(prediction=response, reward=0.5, comment="close")])
    assert response.final_response == FinalAnswer(answer="42", reasoning="multiplied")
    meta = response.metadata or {}
    assert meta["adapter_version"] == 3 and meta["steps"] == 2 and meta["error"] is None

    (prediction,) = read_back(settings, TopicKey.PREDICTIONS, PredictionEvent, group_id(), 1)
    assert prediction.prediction_id == meta["prediction_id"] and prediction.model_id == mid
    assert prediction.final_answer == {"answer": "42", "reasoning": "multiplied"} and prediction.error is None
    assert prediction.messages == response.messages and prediction.adapter_version == 3
    assert [t.message_index for t in prediction.turns] == [len(prediction.messages) - 3, len(prediction.messages) - 1]
    assert all(t.completion_token_ids and t.completion_logprobs for t in prediction.turns)
    assert prediction.timings["total_s"] > 0

    (reward,) = read_back(settings, TopicKey.REWARDS, RewardEvent, group_id(), 1)
    assert (reward.prediction_id, reward.model_id, reward.reward, reward.source, reward.comment) == (
        prediction.prediction_id,
        mid,
        0.5,
        "sdk",
        "close",
    )


@pytest.mark.kafka
@pytest.mark.s3
@pytest.mark.vllm
@pytest.mark.slow
def test_seed_readme_basic_usage_against_the_real_stack(vllm, topics, group_id, tmp_path):
    settings = topics()
    with running_node(settings.topic_prefix, tmp_path, node_id=f"sdk-{group_id()}") as node:
        # ---- the seed README's Basic Usage, unchanged but for the client's connection arguments ----
        from pydantic import BaseModel

        from maximum_continual import MaximumContinual, MessageT, Tool
        from maximum_continual.system_prompt import fetch_default_system_prompt
        from maximum_continual.types import PredictionResponseWithRewardT

        # Define a custom tool
        class WebSearchTool(Tool):
            name = "web_search"
            description = "Performs a web search and returns results"
            inputs = {"query": {"type": "string", "description": "Search query"}}
            output_type = "string"

            def forward(self, query: str) -> str:
                # Implementation here
                return "Search results..."

        # Define response structure
        class FinalAnswer(BaseModel):
            answer: str
            reasoning: str

        # Initialize client
        client = MaximumContinual(
            auto_deploy=True,
            inference_url=node.base_url,
            topic_prefix=settings.topic_prefix,
            max_steps=3,
            max_tokens=160,
            # The seed example authorises `os`, which the sandbox refuses unless the app opts in (#12).
            allow_unsafe_imports=True,
        )

        # Create and use a model
        with client.init_model(model_id="my_model") as model:
            tools = [WebSearchTool()]

            # Make a prediction
            response = model.predict(
                messages=[
                    MessageT(
                        role="system",
                        content=fetch_default_system_prompt(
                            tools, additional_authorized_imports=["os"], final_answer_model=FinalAnswer
                        ),
                    ),
                    MessageT(role="user", content="Search for information about Python"),
                ],
                final_answer_model=FinalAnswer,
                tools=tools,
                additional_authorized_imports=["os"],
            )

            # Update model with reward feedback
            model.update(
                [
                    PredictionResponseWithRewardT(
                        prediction=response,
                        reward=1.0,  # Positive reward for good performance
                    )
                ]
            )
        # ---- end of the example ----
        client.close()

    meta = response.metadata or {}
    (prediction,) = read_back(settings, TopicKey.PREDICTIONS, PredictionEvent, group_id(), 1)
    assert prediction.prediction_id == meta["prediction_id"] and prediction.model_id == "my_model"
    assert prediction.adapter_version == 0  # no adapter announced on these topics: the base model served
    assert prediction.messages == response.messages
    assert 1 <= len(prediction.turns) <= 3
    for turn in prediction.turns:  # the sampler's token ids and logprobs of every model turn
        assert prediction.messages[turn.message_index].role == "assistant"
        assert turn.completion_token_ids and len(turn.completion_logprobs or []) == len(turn.completion_token_ids)
    # mechanics, not the model's luck: either a validated answer or a recorded failure
    if response.final_response is not None:
        assert isinstance(response.final_response, FinalAnswer) and prediction.error is None
        assert prediction.final_answer == response.final_response.model_dump()
    else:
        assert prediction.error and prediction.final_answer is None
    (reward,) = read_back(settings, TopicKey.REWARDS, RewardEvent, group_id(), 1)
    assert (reward.prediction_id, reward.model_id, reward.reward) == (prediction.prediction_id, "my_model", 1.0)
